"""The edge worker: runs every camera and the sensor feed until stopped.

Each camera runs in its own thread (decode and inference release the GIL).
Neuron messages are taken through the whole sensor path
(:class:`~edge.sensor_feed.SensorFeed`: parse, checks, rules) in two child
processes, MQTT intake and rules (:mod:`edge.sensor_process`, the
default), or here on the MQTT client's thread. Every second the sensor
rules see time pass (heartbeat loss, a door held open). A camera whose file
ends logs ``event=camera_finished`` and the worker keeps serving sensors.

Delivery: every alert and dead letter is committed to the edge outbox
(:mod:`edge.outbox`) where it is raised, by the camera thread or the
sensor rules; a sensor message is acknowledged to the broker only after
that. Camera analysis and MQTT intake never wait for the uplink. Two
forwarders on the asyncio loop deliver the outbox's lanes (alerts to the
alert sink, dead letters to theirs) in order, at least once, and delete
what the broker acknowledged. On stop they get ``drain_s`` to empty their
lanes; what is left is delivered after the next start. Kafka is reached in
the background (the topics prepared, the sinks started, retried with backoff
and logged ``event=kafka_unreachable``): a box that starts during a centre
outage analyses and raises all the same, its alerts waiting in the outbox.

Suppressions: with cameras, a task follows the suppression topic
(:class:`~edge.suppressions.SuppressionFeed`) into the book the camera
threads read, while they run; Kafka being down never holds the start back
(the feed retries in the background). Detections dropped by suppressions
are counted per camera and kind (:attr:`EdgeStats.suppressed`), unusable
suppression messages per reason (:attr:`EdgeStats.suppression_rejects`).

Camera health (:mod:`edge.camera_health`): each camera thread runs its
picture checks (frozen, covered, moved) on its frames; a task here ticks
every camera's checks once a second for ``camera_offline`` (no frame for
``offline_s``), since a camera without frames has nothing to judge on. A
source that ended on purpose (a file, the stop) is not offline.

Metrics: the worker's counters are read where they are kept (this module's
:class:`EdgeStats` and :class:`CameraRun` per camera, the outbox and its
forwarders, the disk guard, the MQTT client) by :mod:`edge.metrics` when
scraped; counting costs the hot paths nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.config import PlaceConfig
from core.records import Alert, DeadLetter
from detectors.base import Detector
from detectors.registry import build_detector
from edge.alert_sink import AlertSink
from edge.camera_health import CameraHealth
from edge.camera_supervisor import (
    CameraSupervisor,
    GatedDetector,
    InferenceGate,
    Outcome,
    Reload,
    inference_slots,
)
from edge.camera_worker import CameraWorker
from edge.config import CameraConfig, EdgeServiceConfig
from edge.dead_letters import DeadLetterSink, MemoryDeadLetterSink
from edge.disk_guard import DiskGuard
from edge.evidence_upload import EvidenceUploader
from edge.metrics import TimedDetector
from edge.outbox import Entry, Forwarder, Outbox
from edge.sensor_feed import FeedOutput, SensorFeed
from edge.sensor_process import SensorService
from edge.suppressions import SuppressionBook, SuppressionFeed
from ingest.backoff import Backoff, BackoffPolicy
from ingest.frames import FrameSource, SourceError, SourceStatus, log_status
from ingest.mqtt_source import MqttSource
from ingest.open_source import open_source
from ingest.prefetch import prefetched
from ingest.stream_source import StreamOptions
from ingest.video_file import Pace

TICK_S = 1.0  # how often the sensor rules see time pass
CONNECT_ATTEMPT_S = 15.0  # preparing (the topics) on a broker that does not answer: given up
CONNECT_WAIT_S = 5.0  # a delivery waits this long for the sinks' start, then fails (retried)
DRAIN_S = 30.0  # on stop, how long the forwarders may take to empty the outbox
LOG_FIRST_REJECTS = 20  # rejects logged one by one per reason, then every LOG_EVERY_REJECT-th
LOG_EVERY_REJECT = 1000

log = logging.getLogger("streetwatch.edge")


@dataclass
class EdgeStats:
    alerts: int = 0
    readings: int = 0  # sensor readings that passed every check
    rejects: Counter[str] = field(default_factory=Counter)  # sensor messages, per reason
    dead_letters_sent: int = 0
    camera_errors: Counter[str] = field(default_factory=Counter)
    # camera -> suppression kind -> detections its suppressions dropped (the camera
    # thread's own counter: one entry per camera from the start, read from any thread)
    suppressed: dict[str, Counter[str]] = field(default_factory=dict)
    suppression_rejects: Counter[str] = field(default_factory=Counter)  # messages, per reason
    # (source kind, category) -> alerts put in the outbox; counted from several threads
    raised: Counter[tuple[str, str]] = field(default_factory=Counter)
    _raised_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_raised(self, alerts: Sequence[Alert]) -> None:
        """From any thread: ``alerts`` are in the outbox."""
        with self._raised_lock:
            for alert in alerts:
                self.raised[(alert.source_kind.value, alert.category)] += 1

    def suppressed_counts(self) -> dict[str, dict[str, int]]:
        """The non-zero suppression counts, per camera (for logs)."""
        return {
            cam: {kind: n for kind, n in kinds.items() if n}
            for cam, kinds in self.suppressed.items()
            if any(kinds.values())
        }


@dataclass
class CameraRun:
    """One camera as the worker runs it: set by its thread, read by the metrics."""

    camera_id: str
    analysis_fps: float
    worker: CameraWorker | None = None
    source: FrameSource | None = None
    detector: TimedDetector | None = None
    state: str = "starting"  # then "open", a live source's SourceState, "finished", "failed"
    error: str = ""


# what a reload does not apply (the process was built on them): a restart does
RESTART_SECTIONS = (
    "edge",
    "kafka",
    "mqtt",
    "neuron",
    "detector",
    "place_groups",
    "dedup",
    "device_types",
    "devices",
)


def _places_of(cam: CameraConfig, cfg: EdgeServiceConfig) -> list[PlaceConfig | None]:
    """The places a camera's zones (and its own ``place``) name, as ``cfg`` has them."""
    names = sorted({z.place for z in cam.zones} | ({cam.place} if cam.place else set()))
    by_id = {p.place_id: p for p in cfg.places}
    return [by_id.get(n) for n in names]


def _devices_file(cfg: EdgeServiceConfig) -> bytes | None:
    """The devices file as it is now (a reload compares it); None without one or unreadable."""
    if not cfg.neuron.devices_file:
        return None
    try:
        return Path(cfg.neuron.devices_file).read_bytes()
    except OSError:
        return None


class KafkaNotReached(Exception):
    """The sinks have not reached the broker since the start: nothing can be sent yet."""


class EdgeWorker:
    def __init__(
        self,
        cfg: EdgeServiceConfig,
        sink: AlertSink,
        *,
        pace: Pace = "realtime",
        dead_letters: DeadLetterSink | None = None,
        drain_s: float = DRAIN_S,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.dead_sink: DeadLetterSink = dead_letters or MemoryDeadLetterSink()
        self.pace = pace
        self.stats = EdgeStats()
        self.suppressions = SuppressionBook({c.camera_id: c.timezone for c in cfg.cameras})
        self.suppression_feed = SuppressionFeed(
            cfg.kafka, self.suppressions, client_id=f"streetwatch-{cfg.edge.box_id}-suppressions"
        )
        self.stats.suppression_rejects = self.suppression_feed.rejects
        self.stats.suppressed = {c.camera_id: Counter() for c in cfg.cameras}
        # every camera from the start, so that the metrics may read it from any thread
        self.cameras = {c.camera_id: CameraRun(c.camera_id, c.analysis_fps) for c in cfg.cameras}
        self.camera_health: dict[str, CameraHealth] = {}  # per camera thread; ticked for offline
        self.sink_started = False  # the alert sink reached the broker once
        self.prepare = prepare  # before the sinks start, e.g. creating the topics
        self.connect_retry = BackoffPolicy(min_s=1.0, max_s=30.0)
        self.connect_attempts = 0  # failed attempts to reach Kafka since the start
        self._sinks_up = asyncio.Event()
        self._alert_sink_up = False
        self.stop_threads = threading.Event()
        self.gate = InferenceGate(
            inference_slots(cfg.edge.inference_slots, cfg.detector.threads, os.cpu_count())
        )
        # clips and blurred pictures of every camera (edge/camera_worker.py: "Evidence pool")
        self.evidence_pool = ThreadPoolExecutor(
            max_workers=cfg.edge.evidence_workers, thread_name_prefix="evidence"
        )
        self.supervisor: CameraSupervisor[CameraConfig] = CameraSupervisor(
            self._run_camera,
            restart=BackoffPolicy(min_s=5.0, max_s=cfg.edge.camera_restart_max_s),
            stuck_s=cfg.edge.camera_stuck_s,
        )
        self._detector: Detector | None = None
        self._suppression_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._start = datetime.now(UTC)
        self.evidence_dir = Path(cfg.edge.evidence_dir).resolve()
        self.registry = cfg.device_registry()
        self._devices = _devices_file(cfg)  # as it was at the start
        self._reloading = asyncio.Lock()
        self.feed: SensorFeed | None = None  # the sensor path in this process, or
        self.sensors: SensorService | None = None  # ... in child processes
        self.feed_lock = threading.Lock()
        self.mqtt: MqttSource | None = None
        self.ready = asyncio.Event()
        self.cameras_finished = asyncio.Event()  # every camera source has ended
        self._loop: asyncio.AbstractEventLoop | None = None
        self.drain_s = drain_s
        self.outbox = Outbox(cfg.outbox_path())
        self.alerts_out = Forwarder(self.outbox, "alerts", self._send_alerts)
        self.dead_out = Forwarder(self.outbox, "dead_letters", self._send_dead)
        self.forwarders = [self.alerts_out, self.dead_out]
        self.uploader: EvidenceUploader | None = None
        self.upload = bool(cfg.edge.evidence_url)
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        self.disk = DiskGuard(
            cfg.edge.box_id,
            self.evidence_dir,
            self.outbox,
            cfg.edge.min_free_mb,
            self.upload,
            originals_keep_h=cfg.edge.originals_keep_h,
        )
        if self.upload:
            token = Path(cfg.edge.evidence_token_file).read_text(encoding="utf-8").strip()
            self.uploader = EvidenceUploader(cfg.edge.evidence_url, token)
            # a few files at a time: a clip must not hold the lane for long
            self.evidence_out = Forwarder(self.outbox, "evidence", self.uploader.send, batch=4)
            self.forwarders.append(self.evidence_out)

    async def run(self, stop: asyncio.Event) -> EdgeStats:
        self._loop = asyncio.get_running_loop()
        # Kafka in the background: a box that starts in a centre outage analyses all the
        # same, and its alerts wait in the outbox until the broker answers
        connecting = asyncio.create_task(self._connect())
        detector = build_detector(self.cfg.detector) if self.cfg.cameras else None
        client_id = self.cfg.mqtt.client_id or f"streetwatch-{self.cfg.edge.box_id}"
        subscribed: threading.Event | None = None
        if len(self.registry) and self.cfg.neuron.separate_processes:
            self.sensors = SensorService(
                self.cfg,
                self.evidence_dir,
                client_id,
                self._from_sensors,
                started_at=datetime.now(UTC),
            )
            await asyncio.to_thread(self.sensors.start)
            subscribed = self.sensors.subscribed
        elif len(self.registry):
            self.feed = SensorFeed(
                self.cfg, self.evidence_dir, started_at=datetime.now(UTC), registry=self.registry
            )
            self.mqtt = MqttSource(self.cfg.mqtt, client_id=client_id, on_message=self._on_message)
            self.mqtt.start()
            subscribed = self.mqtt.subscribed
        self._start = datetime.now(UTC)
        self._detector = detector
        cameras = bool(self.cfg.cameras) and detector is not None
        if cameras:  # a thread of its own each (edge/camera_supervisor.py)
            for cam in self.cfg.cameras:
                self.supervisor.start(cam)
        delivered = asyncio.Event()  # set on stop: the forwarders empty their lanes, then end
        forwarding = [asyncio.create_task(f.run(delivered)) for f in self.forwarders]
        background: list[asyncio.Task[None]] = [asyncio.create_task(self._watch_disk())]
        self._background = background  # (a reload adds to it)
        if self.feed is not None:  # (the rules process lets time pass by itself)
            background.append(asyncio.create_task(self._tick()))
        if cameras:  # in the background: Kafka being down must not hold the start back
            self._suppression_task = asyncio.create_task(self.suppression_feed.run())
            background.append(self._suppression_task)
            background.append(asyncio.create_task(self._watch_cameras()))
        cameras_task = asyncio.create_task(self._all_cameras())
        if subscribed is not None and not await asyncio.to_thread(subscribed.wait, 30):
            log.error(
                "event=mqtt_not_subscribed host=%s port=%d: still trying in the background",
                self.cfg.mqtt.host,
                self.cfg.mqtt.port,
            )
        self.ready.set()
        log.info(
            "event=ready box=%s cameras=%d sensors=%d",
            self.cfg.edge.box_id,
            len(self.cfg.cameras),
            len(self.registry),
        )
        await stop.wait()
        self.stop_threads.set()
        await asyncio.to_thread(self.supervisor.stop_all, 60.0)
        self.evidence_pool.shutdown(wait=False)  # (each camera waited for its own evidence)
        if self.mqtt is not None:
            self.mqtt.stop()  # no message is taken in after this
        if self.sensors is not None:
            await asyncio.to_thread(self.sensors.stop)  # its last outputs are handed over
        await cameras_task
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._drain(delivered, forwarding)
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        if self.sink_started:
            await self.dead_sink.stop()
        if self._alert_sink_up:
            await self.sink.stop()
        if self.feed is not None:
            self.stats.readings = self.feed.readings
            self.stats.rejects = Counter(self.feed.rejects)
        if self.sensors is not None:
            self.stats.readings = self.sensors.readings
            self.stats.rejects = Counter(self.sensors.rejects)
        log.info(
            "event=stopped alerts=%d readings=%d rejects=%s dead_letters=%d camera_errors=%s "
            "suppressed=%s suppression_rejects=%s",
            self.stats.alerts,
            self.stats.readings,
            dict(self.stats.rejects),
            self.stats.dead_letters_sent,
            dict(self.stats.camera_errors),
            self.stats.suppressed_counts(),
            dict(self.stats.suppression_rejects),
        )
        return self.stats

    async def _connect(self) -> None:
        """Prepare (the topics), then start both sinks, retrying until Kafka answers."""
        backoff = Backoff(self.connect_retry)
        while True:
            try:
                if self.prepare is not None:  # (a broker that hangs must not hold us quiet)
                    await asyncio.wait_for(self.prepare(), CONNECT_ATTEMPT_S)
                if not self._alert_sink_up:  # (a sink that started is not started twice)
                    await self.sink.start()
                    self._alert_sink_up = True
                await self.dead_sink.start()
            except Exception as exc:  # KafkaError, OSError, TLS errors: all mean "not yet"
                delay = backoff.next_delay()
                self.connect_attempts += 1
                log.warning(
                    "event=kafka_unreachable bootstrap=%s error=%s attempt=%d: alerts wait in "
                    "the outbox; retrying in %.1fs",
                    self.cfg.kafka.bootstrap,
                    f"{type(exc).__name__}: {str(exc) or 'no answer'}",
                    self.connect_attempts,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self.sink_started = True  # (both: the dead letters' sink started last)
            self._sinks_up.set()
            log.info("event=kafka_connected bootstrap=%s", self.cfg.kafka.bootstrap)
            return

    async def _all_cameras(self) -> None:
        await asyncio.to_thread(self.supervisor.wait_all)
        self.cameras_finished.set()

    async def reload(self, cfg: EdgeServiceConfig) -> Reload:
        """Apply a new config's cameras while the others run on (``SIGHUP``): removed
        and changed cameras stop, changed and added ones start. A camera counts as
        changed when its own table changed or a place its zones name did. Every other
        section needs a restart: a change there is logged ``event=reload_needs_restart``
        and not applied. Reloads run one at a time; stopping cameras happens off the
        loop, so the metrics, health checks and uplinks go on meanwhile; the supervisor logs
        ``event=cameras_reloaded`` with what changed."""
        async with self._reloading:
            old = self.cfg
            for section in RESTART_SECTIONS:
                if getattr(cfg, section) != getattr(old, section):
                    log.warning("event=reload_needs_restart section=%s: not applied", section)
            same_file = cfg.neuron.devices_file == old.neuron.devices_file
            if same_file and _devices_file(cfg) != self._devices:  # (a new path: neuron differs)
                log.warning(
                    "event=reload_needs_restart section=neuron.devices_file path=%s: not applied",
                    cfg.neuron.devices_file,
                )
            if cfg.places != old.places and len(self.registry):
                log.warning(
                    "event=reload_needs_restart section=places: applied to the cameras, not "
                    "to the sensors"
                )
            cfg = cfg.model_copy(update={s: getattr(old, s) for s in RESTART_SECTIONS})
            self.suppressions.set_cameras({c.camera_id: c.timezone for c in cfg.cameras})
            for cam in cfg.cameras:
                self.cameras.setdefault(cam.camera_id, CameraRun(cam.camera_id, cam.analysis_fps))
                self.stats.suppressed.setdefault(cam.camera_id, Counter())
            self.cfg = cfg

            def same(a: CameraConfig, b: CameraConfig) -> bool:
                return a == b and _places_of(a, old) == _places_of(b, cfg)

            result = await asyncio.to_thread(self.supervisor.reload, cfg.cameras, same)
            if (result.added or result.changed) and self._suppression_task is not None:
                # read the topic again from its start: the new cameras' suppressions are there
                self._suppression_task.cancel()
                self._suppression_task = asyncio.create_task(self.suppression_feed.run())
                self._background.append(self._suppression_task)
            for camera_id in result.removed:
                self.cameras.pop(camera_id, None)
                health = self.camera_health.pop(camera_id, None)
                if health is not None:
                    health.stop()
            return result

    # -- sensors -------------------------------------------------------------

    async def _drain(self, delivered: asyncio.Event, forwarding: list[asyncio.Task[None]]) -> None:
        """Let the forwarders empty the outbox, for ``drain_s`` at most."""
        delivered.set()
        _, pending = await asyncio.wait(forwarding, timeout=self.drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*forwarding, return_exceptions=True)
        if self.uploader is not None:
            await self.uploader.close()
        if pending:
            log.warning(
                "event=outbox_backlog alerts=%d dead_letters=%d evidence=%d: kept in %s, "
                "delivered after the next start",
                self.outbox.count("alerts"),
                self.outbox.count("dead_letters"),
                self.outbox.count("evidence"),
                self.outbox.path,
            )

    # -- sensors -------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, received_at: datetime) -> None:
        """On the MQTT thread (sensor path in this process): all of it, into the outbox;
        the message is acknowledged to the broker when this returns."""
        assert self.feed is not None
        with self.feed_lock:
            out = self.feed.handle(topic, payload, received_at)
            self.stats.readings = self.feed.readings
            self._put(out)

    def _put(self, out: FeedOutput) -> None:
        """What a message or tick caused (sensor path in this process), on disk."""
        assert self.feed is not None
        if out.alerts or out.dead:
            alerts = [self.feed.with_chart(a) for a in out.alerts]
            self.outbox.put_records(alerts, out.dead, upload=self.upload)
            self.stats.count_raised(alerts)
            self._raised(len(out.alerts), out.dead)

    def _from_sensors(self, out: FeedOutput) -> None:
        """On the sensor service's reader thread: what the rules process put in the outbox."""
        if self.sensors is not None:
            self.stats.readings = self.sensors.readings
        if out.alerts or out.dead:
            self.stats.count_raised([a.alert for a in out.alerts])
            self._raised(len(out.alerts), out.dead)

    def _raised(self, alerts: int, dead: Sequence[DeadLetter]) -> None:
        """From any thread: count what was put in the outbox and wake its forwarders."""
        for letter in dead:
            self.stats.rejects[letter.reason] += 1
        if alerts:
            self._wake_for_alerts()
        if dead:
            self.dead_out.wake_threadsafe()

    def _wake_for_alerts(self) -> None:
        """From any thread: alerts (and their evidence) were put in the outbox."""
        self.alerts_out.wake_threadsafe()
        if self.upload:
            self.evidence_out.wake_threadsafe()

    async def _watch_disk(self) -> None:
        """Every ``disk_check_s``: the disk guard's evictions and health alerts."""
        while True:
            health = await asyncio.to_thread(self.disk.check, datetime.now(UTC))
            if health:
                await asyncio.to_thread(self.outbox.put_records, health)
                self.stats.count_raised(health)
                self._wake_for_alerts()
            await asyncio.sleep(self.cfg.edge.disk_check_s)

    async def _watch_cameras(self) -> None:
        """Every second: camera_offline for a camera without frames (edge/camera_health.py;
        the picture checks run on the camera threads)."""
        while True:
            await asyncio.sleep(TICK_S)
            self.supervisor.watch()  # restarts failed cameras, reports stuck ones
            for health in list(self.camera_health.values()):
                alerts = await asyncio.to_thread(health.tick, datetime.now(UTC))
                if alerts:
                    await asyncio.to_thread(self.outbox.put_records, alerts, upload=self.upload)
                    await asyncio.to_thread(health.settled, alerts)  # durable: kept as raised
                    self.stats.count_raised(alerts)
                    self._wake_for_alerts()

    async def _tick(self) -> None:
        assert self.feed is not None
        while True:
            await asyncio.sleep(TICK_S)
            with self.feed_lock:
                out = self.feed.tick(datetime.now(UTC))
                self._put(out)

    # -- the forwarders' senders -----------------------------------------------

    async def _send_alerts(self, entries: Sequence[Entry]) -> None:
        await self._connected()
        alerts = [Alert.model_validate_json(e.value) for e in entries]
        await self.sink.publish(alerts)
        self.stats.alerts += len(alerts)
        for alert in alerts:
            log.info(
                "event=alert category=%s place=%s source=%s phase=%s id=%s",
                alert.category,
                alert.place.place_id,
                alert.source_id,
                alert.phase,
                alert.alert_id,
            )

    async def _connected(self) -> None:
        """Return once the sinks are started; raise (the forwarder retries) after a while."""
        if self.sink_started:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sinks_up.wait(), CONNECT_WAIT_S)
        if not self.sink_started:
            raise KafkaNotReached(
                f"kafka at {self.cfg.kafka.bootstrap} not reached yet; kept in the outbox"
            )

    async def _send_dead(self, entries: Sequence[Entry]) -> None:
        await self._connected()
        letters = [DeadLetter.model_validate_json(e.value) for e in entries]
        for letter in letters:
            await self.dead_sink.send(letter)
        await self.dead_sink.flush()
        self.stats.dead_letters_sent += len(letters)
        for letter in letters:
            seen = self.stats.rejects[letter.reason]
            if seen <= LOG_FIRST_REJECTS or seen % LOG_EVERY_REJECT == 0:  # not a log flood
                log.warning(
                    "event=reading_rejected reason=%s count=%d topic=%.120s detail=%s letter=%s",
                    letter.reason,
                    seen,
                    letter.topic,
                    letter.detail,
                    letter.letter_id,
                )

    # -- cameras ---------------------------------------------------------------

    def _run_camera(
        self, cam: CameraConfig, stop: threading.Event, beat: Callable[[], None]
    ) -> Outcome:
        """One camera's thread (the supervisor's): its outcome says whether to restart it."""
        assert self._detector is not None
        return self._camera(cam, self._detector, self._start, stop, beat)

    def _camera(
        self,
        cam: CameraConfig,
        detector: Detector,
        start: datetime,
        stop: threading.Event,
        beat: Callable[[], None],
    ) -> Outcome:
        run = self.cameras.setdefault(cam.camera_id, CameraRun(cam.camera_id, cam.analysis_fps))
        run.state, run.error = "starting", ""
        outcome = Outcome.FINISHED

        def emit(alert: Alert) -> None:  # on disk when this returns; no wait for the uplink
            self.outbox.put_records([alert], upload=self.upload)
            self.stats.count_raised([alert])
            self._wake_for_alerts()

        def status(s: SourceStatus) -> None:
            beat()  # a source reconnecting is alive, if not delivering (camera_offline says so)
            run.state = s.state.value
            log_status(log, "camera", s)
            worker.health.status(s)  # why a camera_offline, if one comes

        run.detector = TimedDetector(GatedDetector(detector, self.gate))  # its time, its turn
        worker = CameraWorker(
            cam,
            self.cfg,
            run.detector,
            self.evidence_dir,
            emit,
            suppressions=self.suppressions,
            evidence_pool=self.evidence_pool,
        )
        run.worker = worker
        self.camera_health[cam.camera_id] = worker.health
        self.stats.suppressed[cam.camera_id] = worker.suppressed  # (the key exists: no resize)
        options = StreamOptions(
            open_timeout_s=cam.stream.open_timeout_s,
            read_timeout_s=cam.stream.read_timeout_s,
            backoff=BackoffPolicy(min_s=cam.stream.retry_min_s, max_s=cam.stream.retry_max_s),
        )
        source: FrameSource | None = None
        # the main stream for evidence, if any: same start, so two files share one clock
        evidence = worker.open_evidence(start=start, pace=self.pace, options=options)
        if evidence is not None:
            evidence.start()
        try:
            source = open_source(
                cam.camera_id,
                cam.url,
                cam.analysis_fps,
                pace=self.pace,
                start=start,
                loop=cam.loop,
                stop=stop,
                on_status=status,
                options=options,
            )
            run.source = source
            if run.state == "starting":  # (a live source reports its own states)
                run.state = "open"
            for frame in prefetched(source.frames(), name=f"decode-{cam.camera_id}"):
                worker.process(frame)
                beat()
            run.state = "finished"
            worker.health.stop()  # ended on purpose (file over, or stopping): not offline
        except SourceError as exc:
            run.state, run.error = "failed", str(exc)
            self.stats.camera_errors[cam.camera_id] += 1
            log.error("event=camera_error camera=%s error=%s", cam.camera_id, exc)
        except Exception as exc:
            run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
            self.stats.camera_errors[cam.camera_id] += 1
            log.exception("event=camera_error camera=%s: unexpected failure", cam.camera_id)
            outcome = Outcome.FAILED  # the supervisor starts it again, backing off
        finally:
            if evidence is not None:
                evidence.stop()  # before finish: clips end with the frames they have
            worker.finish()  # alerts already raised still go out, with their clips
        log.info(
            "event=camera_finished camera=%s decoded=%d analysed=%d detector_runs=%d alerts=%d "
            "reconnects=%d stalls=%d evidence_frames=%s evidence_fallbacks=%d suppressed=%s",
            cam.camera_id,
            source.frames_decoded if source else 0,
            worker.analysed,
            worker.detector_runs,
            worker.alerts,
            source.reconnects if source else 0,
            source.stalls if source else 0,
            evidence.frames if evidence else "-",
            worker.evidence_fallbacks,
            {kind: n for kind, n in worker.suppressed.items() if n},
        )
        return outcome
