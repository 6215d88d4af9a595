"""The sensor path in two child processes: MQTT intake, then the rules.

Taking a message off the MQTT socket (paho, pure Python) costs about as
much CPU as parsing, checking and judging it, and one Python process runs
one thread at a time: in the edge worker, the MQTT thread would also wait
for the GIL behind every camera thread and every wake-up of the asyncio
loop. So :class:`SensorService` runs

- an *intake* process: the MQTT client (:class:`~ingest.mqtt_source.MqttSource`)
  and nothing else. Each message is appended to a batch; a batch goes down
  a pipe when it holds ``batch`` messages or ``flush_s`` after its first
  one, so the intake pays for one pickle per batch, not per message;
- a *rules* process: a :class:`~edge.sensor_feed.SensorFeed` (parse,
  checks, rules, charts) over each batch, and every ``tick_s`` over passing
  time. It commits what a batch caused (alerts, dead letters) to the edge
  outbox (:mod:`edge.outbox`) in one transaction, then tells the intake
  (``Durable``), which only then acknowledges the batch's messages to the
  broker; and it tells the worker how many readings it took in, the alerts
  and the dead letters (for its counts and logs: the outbox's forwarders
  deliver them).

Order is kept (one pipe after the other, batches in arrival order). A full
pipe blocks the intake's MQTT thread, so it stops reading and the broker
holds the messages (back-pressure, nothing dropped). A message is
acknowledged to the broker only once what it caused is on disk: if a child
dies, both start again (the rules with fresh state) and the broker, holding
the persistent session, delivers the unacknowledged messages again. A
reading delivered twice yields the same alert id, which the dispatch service
folds as a re-delivery; one whose alert was raised before the crash raises
nothing new, since its state rule starts afresh from the next reading.

What crosses the pipes is the typed records of :mod:`edge.sensor_wire`, one
per message; a record of a type the reader does not expect is logged and
skipped.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypeVar

from core.logs import LogFormat, formatter, root_log_format
from edge.config import EDGE_SECTIONS, EdgeServiceConfig
from edge.outbox import Outbox
from edge.sensor_feed import FeedAlert, FeedOutput, SensorFeed
from edge.sensor_wire import (
    Durable,
    EndOfStream,
    Failed,
    IntakeCommand,
    IntakeLost,
    IntakeReply,
    IntakeToRules,
    MqttBatch,
    MqttState,
    Output,
    Ready,
    RulesReply,
    RulesToIntake,
    Started,
    Stop,
    Stopped,
    Subscribed,
)
from ingest.mqtt_source import MqttSource, Receipt

log = logging.getLogger(__name__)

_R = TypeVar("_R")

START_TIMEOUT_S = 120.0
STATE_EVERY_S = 1.0  # the intake reports its MQTT client's state at most this often


def _child_setup(level: int, log_format: LogFormat = "text") -> None:
    """A child's logging (in the worker's format); it ignores SIGINT and SIGTERM, which
    a terminal or a service manager sends the worker's whole process group: the worker
    stops its children in order (intake first, then the rules), or restarts them if
    they die."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])


def _unexpected(source: str, record: object) -> None:
    log.error(
        "event=sensor_unexpected_record from=%s type=%s: skipped",
        source,
        type(record).__qualname__,
    )


# Typed senders: what each end may put on its pipe (Connection.send takes anything).


def _to_rules(pipe: Connection, message: IntakeToRules) -> None:
    pipe.send(message)


def _intake_command(control: Connection, command: IntakeCommand) -> None:
    control.send(command)


def _intake_reply(control: Connection, reply: IntakeReply) -> None:
    control.send(reply)


def _rules_reply(to_worker: Connection, reply: RulesReply) -> None:
    to_worker.send(reply)


def _to_intake(pipe: Connection, message: RulesToIntake) -> None:
    pipe.send(message)


# -- intake process -----------------------------------------------------------


class _Batcher:
    """Gathers messages (MQTT thread) and sends them in batches (any thread); keeps each
    batch's receipts until the rules say it is durable (:meth:`durable`)."""

    def __init__(self, pipe: Connection, size: int, flush_s: float) -> None:
        self.pipe = pipe
        self.size = size
        self.flush_s = flush_s
        self.lock = threading.Lock()
        self.seq = 0
        self.topics: list[str] = []
        self.payloads: list[bytes] = []
        self.times: list[float] = []
        self.receipts: list[Receipt] = []
        self.unacknowledged: dict[int, list[Receipt]] = {}
        self.pending = threading.Event()
        self.closed = False
        threading.Thread(target=self._flusher, name="sensor-flush", daemon=True).start()

    def submit(self, topic: str, payload: bytes, received_at: datetime, receipt: Receipt) -> None:
        with self.lock:
            self.topics.append(topic)
            self.payloads.append(payload)
            self.times.append(received_at.timestamp())
            self.receipts.append(receipt)
            if len(self.topics) >= self.size:
                self._send()
            elif len(self.topics) == 1:
                self.pending.set()

    def _send(self) -> None:
        if self.topics:
            self.seq += 1
            batch = MqttBatch(self.seq, tuple(self.topics), tuple(self.payloads), tuple(self.times))
            self.unacknowledged[self.seq] = self.receipts
            self.topics, self.payloads, self.times, self.receipts = [], [], [], []
            _to_rules(self.pipe, batch)
        self.pending.clear()

    def durable(self, seq: int) -> list[Receipt]:
        """The receipts of batch ``seq``, now safe to acknowledge."""
        with self.lock:
            return self.unacknowledged.pop(seq, [])

    def _flusher(self) -> None:
        while not self.closed:
            if self.pending.wait(0.5):
                time.sleep(self.flush_s)  # let the batch gather
                with self.lock:
                    self._send()

    def close(self) -> None:
        with self.lock:
            self._send()
            self.closed = True
            _to_rules(self.pipe, EndOfStream())


def _acknowledge(from_rules: Connection, batcher: _Batcher, mqtt: MqttSource) -> None:
    """Acknowledge each batch's messages to the broker once the rules say it is durable."""
    while True:
        try:
            record: object = from_rules.recv()
        except (EOFError, OSError):
            return  # the rules are gone: unacknowledged messages come again
        if isinstance(record, Durable):
            for receipt in batcher.durable(record.seq):
                mqtt.ack(receipt)
        else:
            _unexpected("rules", record)


def _intake(
    cfg_json: str,
    client_id: str,
    to_rules: Connection,
    from_rules: Connection,
    control: Connection,
    batch: int,
    flush_s: float,
    log_level: int,
    log_format: LogFormat = "text",
) -> None:
    _child_setup(log_level, log_format)
    try:
        cfg = EdgeServiceConfig.model_validate_json(cfg_json)
        batcher = _Batcher(to_rules, batch, flush_s)
        mqtt = MqttSource(cfg.mqtt, client_id, on_delivery=batcher.submit)
        threading.Thread(
            target=_acknowledge, args=(from_rules, batcher, mqtt), name="sensor-ack", daemon=True
        ).start()
        mqtt.start()
    except Exception:
        _intake_reply(control, Failed(traceback.format_exc()))
        return
    _intake_reply(control, Started())
    send_lock = threading.Lock()

    def report_subscribed() -> None:
        while not mqtt.subscribed.wait(1.0):
            if batcher.closed:
                return
        with send_lock:
            _intake_reply(control, Subscribed())

    def report_state() -> None:  # for the worker's metrics: what changed, once a second
        last: MqttState | None = None
        while not batcher.closed:
            st = mqtt.stats
            state = MqttState(
                mqtt.connected.is_set(),
                st.messages,
                st.connects,
                st.disconnects,
                st.connect_failures,
                st.refusals,
                st.redelivered,
            )
            if state != last:
                with send_lock, contextlib.suppress(OSError):
                    if not batcher.closed:
                        _intake_reply(control, state)
                last = state
            time.sleep(STATE_EVERY_S)

    threading.Thread(target=report_subscribed, daemon=True).start()
    threading.Thread(target=report_state, name="mqtt-state", daemon=True).start()
    with contextlib.suppress(EOFError, OSError):
        command: object = control.recv()  # Stop (EOF: the worker is gone)
        if not isinstance(command, Stop):
            _unexpected("worker", command)  # stop all the same, as the worker expects
    mqtt.stop()
    batcher.close()
    with send_lock, contextlib.suppress(OSError):
        _intake_reply(control, Stopped(mqtt.stats.messages))


# -- rules process ------------------------------------------------------------


def _rules(
    cfg_json: str,
    evidence_dir: str,
    started_at: float,
    tick_s: float,
    inbox: Connection,
    to_intake: Connection,
    to_worker: Connection,
    log_level: int,
    log_format: LogFormat = "text",
) -> None:
    _child_setup(log_level, log_format)
    try:
        cfg = EdgeServiceConfig.model_validate_json(cfg_json)
        feed = SensorFeed(
            cfg, Path(evidence_dir), started_at=datetime.fromtimestamp(started_at, UTC)
        )
        outbox = Outbox(cfg.outbox_path())
        upload = bool(cfg.edge.evidence_url)
    except Exception:
        _rules_reply(to_worker, Failed(traceback.format_exc()))
        return
    _rules_reply(to_worker, Ready(len(feed.registry)))
    messages = 0
    next_tick = time.monotonic() + tick_s
    while True:
        if inbox.poll(max(0.0, next_tick - time.monotonic())):
            try:
                received: object = inbox.recv()
            except EOFError:
                _rules_reply(to_worker, IntakeLost())
                return
            match received:
                case EndOfStream():
                    _rules_reply(to_worker, Stopped(messages))
                    return
                case MqttBatch():
                    messages += len(received)
                    before = feed.readings
                    out = FeedOutput()
                    batch = zip(
                        received.topics, received.payloads, received.received_at, strict=True
                    )
                    for topic, payload, received_at in batch:
                        got = feed.handle(topic, payload, datetime.fromtimestamp(received_at, UTC))
                        out.alerts += got.alerts
                        out.dead += got.dead
                    _deliver(outbox, to_worker, feed, feed.readings - before, out, upload)
                    _to_intake(to_intake, Durable(received.seq))
                case _:
                    _unexpected("intake", received)
        if time.monotonic() >= next_tick:
            next_tick = time.monotonic() + tick_s
            ticked = feed.tick(datetime.now(UTC))
            if ticked.alerts:
                _deliver(outbox, to_worker, feed, 0, ticked, upload)


def _deliver(
    outbox: Outbox,
    to_worker: Connection,
    feed: SensorFeed,
    readings: int,
    out: FeedOutput,
    upload: bool,
) -> None:
    """Into the outbox (on disk when this returns; with ``upload``, the evidence files to
    send to the centre too), then word to the worker."""
    alerts = tuple(feed.with_chart(a) for a in out.alerts)
    outbox.put_records(alerts, out.dead, upload=upload)
    _rules_reply(to_worker, Output(readings, alerts, tuple(out.dead)))


# -- the worker's side ----------------------------------------------------------


def _expect(conn: Connection, proc: BaseProcess, what: str, kind: type[_R]) -> _R:
    """Wait for the process's first record of ``kind`` (others are logged and skipped)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            proc.kill()
            raise RuntimeError(f"the sensor {what} process did not start")
        try:
            reply: object = conn.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(
                f"the sensor {what} process exited on start (exit code {proc.exitcode})"
            ) from None
        if isinstance(reply, Failed):
            proc.join(5)
            raise RuntimeError(f"the sensor {what} process failed to start:\n{reply.traceback}")
        if isinstance(reply, kind):
            return reply
        _unexpected(what, reply)


class SensorService:
    """Starts, watches and stops the two sensor processes; see the module docstring."""

    def __init__(
        self,
        cfg: EdgeServiceConfig,
        evidence_dir: Path,
        client_id: str,
        on_output: Callable[[FeedOutput], None],
        *,
        started_at: datetime | None = None,
        batch: int = 512,
        flush_s: float = 0.02,
        tick_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        # the edge's sections only: cfg may be a whole file's config (streetwatch.config)
        self._cfg_json = cfg.model_dump_json(include=set(EDGE_SECTIONS))
        self.evidence_dir = evidence_dir
        self.client_id = client_id
        self.on_output = on_output
        self.started_at = started_at or datetime.now(UTC)
        self.batch = batch
        self.flush_s = flush_s
        self.tick_s = tick_s
        self.subscribed = threading.Event()
        self.readings = 0
        self.rejects: Counter[str] = Counter()
        self.messages = 0  # taken off MQTT by intakes that stopped cleanly
        self.restarts = 0
        self.mqtt: MqttState | None = None  # the intake's MQTT client, as last reported
        self._ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._counts = threading.Lock()
        self._stopping = False
        self._intake: BaseProcess | None = None
        self._rules: BaseProcess | None = None
        self._control: Connection | None = None
        self._from_rules: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()

    def start(self) -> None:
        self._spawn()
        t = threading.Thread(target=self._read, name="sensor-reader", daemon=True)
        t.start()
        self._threads.append(t)

    def _spawn(self) -> None:
        level = logging.getLogger().getEffectiveLevel()
        log_format = root_log_format()  # the children log as the worker does
        rules_in, intake_out = self._ctx.Pipe(duplex=False)
        acks_in, rules_acks = self._ctx.Pipe(duplex=False)
        worker_in, rules_out = self._ctx.Pipe(duplex=False)
        control, intake_control = self._ctx.Pipe(duplex=True)
        rules = self._ctx.Process(
            target=_rules,
            args=(
                self._cfg_json,
                str(self.evidence_dir),
                self.started_at.timestamp(),
                self.tick_s,
                rules_in,
                rules_acks,
                rules_out,
                level,
                log_format,
            ),
            name="streetwatch-sensor-rules",
            daemon=True,
        )
        rules.start()
        rules_in.close()
        rules_acks.close()
        rules_out.close()
        ready = _expect(worker_in, rules, "rules", Ready)
        intake = self._ctx.Process(
            target=_intake,
            args=(
                self._cfg_json,
                self.client_id,
                intake_out,
                acks_in,
                intake_control,
                self.batch,
                self.flush_s,
                level,
                log_format,
            ),
            name="streetwatch-sensor-intake",
            daemon=True,
        )
        intake.start()
        intake_out.close()
        acks_in.close()
        intake_control.close()
        _expect(control, intake, "intake", Started)
        self._rules, self._intake = rules, intake
        self._from_rules, self._control = worker_in, control
        t = threading.Thread(target=self._watch_intake, args=(control,), daemon=True)
        t.start()
        log.info(
            "event=sensor_processes_started intake_pid=%s rules_pid=%s devices=%s",
            intake.pid,
            rules.pid,
            ready.devices,
        )

    def _watch_intake(self, control: Connection) -> None:
        while True:
            try:
                reply: object = control.recv()
            except (EOFError, OSError):
                return  # the rules side sees the intake go and restarts both
            match reply:
                case Subscribed():
                    self.subscribed.set()
                case MqttState():
                    self.mqtt = reply
                case Stopped(messages=messages):
                    self.messages += messages
                    return
                case _:
                    _unexpected("intake", reply)

    def _read(self) -> None:
        while True:
            outbox = self._from_rules
            assert outbox is not None
            try:
                reply: object = outbox.recv()
            except (EOFError, OSError):
                if self._lost("rules_lost"):
                    return
                continue
            match reply:
                case Output():
                    self._output(reply)
                case Stopped():
                    self._done.set()
                    return
                case IntakeLost():
                    if self._lost("intake_lost"):
                        return
                case _:
                    _unexpected("rules", reply)

    def _output(self, reply: Output) -> None:
        out = FeedOutput(
            alerts=[FeedAlert(a) for a in reply.alerts],
            dead=list(reply.dead),
        )
        with self._counts:
            self.readings += reply.readings
            for letter in out.dead:
                self.rejects[letter.reason] += 1
        self.on_output(out)

    def _lost(self, why: str) -> bool:
        """A process went: restart both, unless stopping. True: the reader is done."""
        if self._stopping:
            self._done.set()
            return True
        self._restart(why)
        return False

    def _restart(self, why: str) -> None:
        self.restarts += 1
        log.error(
            "event=sensor_process_died which=%s intake_exit=%s rules_exit=%s: starting both "
            "again; the broker delivers again what they had not acknowledged, rule state "
            "starts afresh",
            why,
            self._intake.exitcode if self._intake else None,
            self._rules.exitcode if self._rules else None,
        )
        self._kill()
        self.subscribed.clear()
        self.mqtt = None
        self._spawn()

    def _kill(self) -> None:
        for proc in (self._intake, self._rules):
            if proc is not None and proc.is_alive():
                proc.kill()
                proc.join(5)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the intake (it sends what it holds), let the rules finish, end both."""
        self._stopping = True
        if self._control is not None:
            with contextlib.suppress(OSError):
                _intake_command(self._control, Stop())
        self._done.wait(timeout)
        for proc in (self._intake, self._rules):
            if proc is not None:
                proc.join(timeout)
        self._kill()
