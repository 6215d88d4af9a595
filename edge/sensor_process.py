"""The sensor path in two child processes: MQTT intake, then the rules.

Taking a message off the MQTT socket (paho, pure Python) costs about as
much CPU as parsing, checking and judging it, and one Python process runs
one thread at a time: in the edge worker, the MQTT thread would also wait
for the GIL behind every camera thread and every wake-up of the asyncio
loop. So :class:`SensorService` runs

- an *intake* process: the MQTT client (:class:`~ingest.mqtt_source.MqttSource`)
  and nothing else. Each message is appended to a batch and acknowledged
  to the broker; a batch goes down a pipe when it holds ``batch`` messages
  or ``flush_s`` after its first one, so the intake pays for one pickle per
  batch, not per message;
- a *rules* process: a :class:`~edge.sensor_feed.SensorFeed` (parse,
  checks, rules, charts) over each batch, and every ``tick_s`` over passing
  time. It sends the worker, per batch, how many readings it took in, the
  alerts and the dead letters.

Order is kept (one pipe after the other, batches in arrival order). A full
pipe blocks the intake's MQTT thread, so it stops reading and the broker
holds the messages (back-pressure, nothing dropped). Messages are
acknowledged once they are in a batch: if a child dies, the messages in
flight are counted and logged as lost, and both children start again (the
rules with fresh state; the MQTT session is persistent, so what the broker
still holds arrives).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from edge.sensor_feed import FeedAlert, FeedOutput, SensorFeed
from ingest.mqtt_source import MqttSource
from streetwatch.config import Config
from streetwatch.records import Alert, DeadLetter

log = logging.getLogger(__name__)

Message = tuple[str, bytes, float]  # topic, payload, receive time (epoch s)
Reply = tuple[object, ...]

START_TIMEOUT_S = 120.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _logging(level: int) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


# -- intake process -----------------------------------------------------------


class _Batcher:
    """Gathers messages (MQTT thread) and sends them in batches (any thread)."""

    def __init__(self, pipe: Connection, size: int, flush_s: float) -> None:
        self.pipe = pipe
        self.size = size
        self.flush_s = flush_s
        self.lock = threading.Lock()
        self.batch: list[Message] = []
        self.pending = threading.Event()
        self.closed = False
        threading.Thread(target=self._flusher, name="sensor-flush", daemon=True).start()

    def submit(self, topic: str, payload: bytes, received_at: datetime) -> None:
        with self.lock:
            self.batch.append((topic, payload, received_at.timestamp()))
            if len(self.batch) >= self.size:
                self._send()
            elif len(self.batch) == 1:
                self.pending.set()

    def _send(self) -> None:
        batch, self.batch = self.batch, []
        self.pending.clear()
        if batch:
            self.pipe.send(batch)

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
            self.pipe.send(None)  # end of stream


def _intake(
    cfg_json: str,
    client_id: str,
    to_rules: Connection,
    control: Connection,
    batch: int,
    flush_s: float,
    log_level: int,
) -> None:
    _logging(log_level)
    try:
        cfg = Config.model_validate_json(cfg_json)
        batcher = _Batcher(to_rules, batch, flush_s)
        mqtt = MqttSource(cfg.mqtt, client_id, batcher.submit)
        mqtt.start()
    except Exception:
        control.send(("error", traceback.format_exc()))
        return
    control.send(("ready",))
    send_lock = threading.Lock()

    def report_subscribed() -> None:
        while not mqtt.subscribed.wait(1.0):
            if batcher.closed:
                return
        with send_lock:
            control.send(("subscribed",))

    threading.Thread(target=report_subscribed, daemon=True).start()
    with contextlib.suppress(EOFError, OSError):
        control.recv()  # "stop", or the worker is gone
    mqtt.stop()
    batcher.close()
    with send_lock, contextlib.suppress(OSError):
        control.send(("stopped", mqtt.stats.messages))


# -- rules process ------------------------------------------------------------


def _rules(
    cfg_json: str,
    evidence_dir: str,
    started_at: float,
    tick_s: float,
    inbox: Connection,
    outbox: Connection,
    log_level: int,
) -> None:
    _logging(log_level)
    try:
        cfg = Config.model_validate_json(cfg_json)
        feed = SensorFeed(
            cfg, Path(evidence_dir), started_at=datetime.fromtimestamp(started_at, UTC)
        )
    except Exception:
        outbox.send(("error", traceback.format_exc()))
        return
    outbox.send(("ready", len(feed.registry)))
    next_tick = time.monotonic() + tick_s
    while True:
        if inbox.poll(max(0.0, next_tick - time.monotonic())):
            try:
                batch: list[Message] | None = inbox.recv()
            except EOFError:
                outbox.send(("intake_lost",))
                return
            if batch is None:
                outbox.send(("stopped",))
                return
            before = feed.readings
            out = FeedOutput()
            for topic, payload, received in batch:
                got = feed.handle(topic, payload, datetime.fromtimestamp(received, UTC))
                out.alerts += got.alerts
                out.dead += got.dead
            _reply(outbox, feed, feed.readings - before, out)
        if time.monotonic() >= next_tick:
            next_tick = time.monotonic() + tick_s
            ticked = feed.tick(datetime.now(UTC))
            if ticked.alerts:
                _reply(outbox, feed, 0, ticked)


def _reply(outbox: Connection, feed: SensorFeed, readings: int, out: FeedOutput) -> None:
    alerts = [feed.with_chart(a).model_dump_json() for a in out.alerts]
    dead = [d.model_dump_json() for d in out.dead]
    outbox.send(("out", readings, alerts, dead))


# -- the worker's side ----------------------------------------------------------


def _expect(conn: Connection, proc: BaseProcess, what: str) -> Reply:
    if not conn.poll(START_TIMEOUT_S):
        proc.kill()
        raise RuntimeError(f"the sensor {what} process did not start")
    try:
        reply: Reply = conn.recv()
    except EOFError:
        proc.join(5)
        raise RuntimeError(
            f"the sensor {what} process exited on start (exit code {proc.exitcode})"
        ) from None
    if reply[0] == "error":
        proc.join(5)
        raise RuntimeError(f"the sensor {what} process failed to start:\n{reply[1]}")
    return reply


class SensorService:
    """Starts, watches and stops the two sensor processes; see the module docstring."""

    def __init__(
        self,
        cfg: Config,
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
        self._ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._counts = threading.Lock()
        self._stopping = False
        self._intake: BaseProcess | None = None
        self._rules: BaseProcess | None = None
        self._control: Connection | None = None
        self._outbox: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()

    def start(self) -> None:
        self._spawn()
        t = threading.Thread(target=self._read, name="sensor-reader", daemon=True)
        t.start()
        self._threads.append(t)

    def _spawn(self) -> None:
        level = logging.getLogger().getEffectiveLevel()
        rules_in, intake_out = self._ctx.Pipe(duplex=False)
        worker_in, rules_out = self._ctx.Pipe(duplex=False)
        control, intake_control = self._ctx.Pipe(duplex=True)
        rules = self._ctx.Process(
            target=_rules,
            args=(
                self.cfg.model_dump_json(),
                str(self.evidence_dir),
                self.started_at.timestamp(),
                self.tick_s,
                rules_in,
                rules_out,
                level,
            ),
            name="streetwatch-sensor-rules",
            daemon=True,
        )
        rules.start()
        rules_in.close()
        rules_out.close()
        ready = _expect(worker_in, rules, "rules")
        intake = self._ctx.Process(
            target=_intake,
            args=(
                self.cfg.model_dump_json(),
                self.client_id,
                intake_out,
                intake_control,
                self.batch,
                self.flush_s,
                level,
            ),
            name="streetwatch-sensor-intake",
            daemon=True,
        )
        intake.start()
        intake_out.close()
        intake_control.close()
        _expect(control, intake, "intake")
        self._rules, self._intake = rules, intake
        self._outbox, self._control = worker_in, control
        t = threading.Thread(target=self._watch_intake, args=(control,), daemon=True)
        t.start()
        log.info(
            "event=sensor_processes_started intake_pid=%s rules_pid=%s devices=%s",
            intake.pid,
            rules.pid,
            ready[1],
        )

    def _watch_intake(self, control: Connection) -> None:
        while True:
            try:
                reply: Reply = control.recv()
            except (EOFError, OSError):
                return  # the rules side sees the intake go and restarts both
            if reply[0] == "subscribed":
                self.subscribed.set()
            elif reply[0] == "stopped":
                assert isinstance(reply[1], int)
                self.messages += reply[1]
                return

    def _read(self) -> None:
        while True:
            outbox = self._outbox
            assert outbox is not None
            try:
                reply: Reply = outbox.recv()
            except (EOFError, OSError):
                reply = ("rules_lost",)
            kind = reply[0]
            if kind == "stopped":
                self._done.set()
                return
            if kind in ("intake_lost", "rules_lost"):
                if self._stopping:
                    self._done.set()
                    return
                self._restart(str(kind))
                continue
            if kind != "out":
                continue
            _, readings, alerts, dead = reply
            assert isinstance(readings, int) and isinstance(alerts, list)
            assert isinstance(dead, list)
            out = FeedOutput(
                alerts=[FeedAlert(Alert.model_validate_json(a)) for a in alerts],
                dead=[DeadLetter.model_validate_json(d) for d in dead],
            )
            with self._counts:
                self.readings += readings
                for letter in out.dead:
                    self.rejects[letter.reason] += 1
            self.on_output(out)

    def _restart(self, why: str) -> None:
        self.restarts += 1
        log.error(
            "event=sensor_process_died which=%s intake_exit=%s rules_exit=%s: starting both "
            "again; messages in flight are lost, rule state starts afresh",
            why,
            self._intake.exitcode if self._intake else None,
            self._rules.exitcode if self._rules else None,
        )
        self._kill()
        self.subscribed.clear()
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
                self._control.send("stop")
        self._done.wait(timeout)
        for proc in (self._intake, self._rules):
            if proc is not None:
                proc.join(timeout)
        self._kill()
