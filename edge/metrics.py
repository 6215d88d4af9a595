"""The edge worker's metrics and readiness, read from its own counters when scraped.

:class:`EdgeCollector` turns what the worker already counts (:class:`~edge.worker.EdgeStats`,
each camera's :class:`~edge.worker.CameraRun`, the outbox and its forwarders,
the disk guard, the MQTT client, the suppression feed) into Prometheus
families at scrape time; nothing on a camera thread or the MQTT path does
more work for it than it did before, except two clock reads per detector
run (:class:`TimedDetector`). :func:`edge_readiness` says whether the box
does its job: cameras running, the outbox writable, Kafka taking what it is
sent, MQTT connected. The README lists every metric ("Operating a box").
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import (
    Metric,
    SummaryMetricFamily,
)

from core.observability import (
    OpsServer,
    Readiness,
    counter,
    gauge,
    listen_address,
    new_registry,
    snapshot,
)
from detectors.base import Detector, Frame
from detectors.detections import Detections
from edge.outbox import LANES, Forwarder

if TYPE_CHECKING:
    from edge.worker import CameraRun, EdgeWorker

MIN_FREE_BYTES = 1024 * 1024  # less than this on the outbox's disk: it cannot take alerts
LIVE = ("open", "streaming")  # camera states in which frames come in
DONE = ("finished", "stopped")  # a file that ended; a source stopped by the worker


class TimedDetector:
    """A camera's detector, timed: the runs and the seconds they took (one camera's
    thread calls it; the metrics read it from another)."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.runs = 0
        self.seconds = 0.0

    @property
    def labels(self) -> tuple[str, ...]:
        return self.inner.labels

    def detect(self, frame: Frame) -> Detections:
        start = time.perf_counter()
        try:
            return self.inner.detect(frame)
        finally:
            self.seconds += time.perf_counter() - start
            self.runs += 1


def up_to_date(forwarders: Iterable[Forwarder]) -> bool:
    """No forwarder's last attempt failed (none tried is up to date too)."""
    return all(
        f.last_failure is None or (f.last_success is not None and f.last_success >= f.last_failure)
        for f in forwarders
    )


def kafka_connected(worker: EdgeWorker) -> bool:
    """The alert sink reached the broker, and the last delivery tried on each Kafka lane
    (alerts, dead letters) was acknowledged."""
    return worker.sink_started and up_to_date([worker.alerts_out, worker.dead_out])


def mqtt_connected(worker: EdgeWorker) -> bool | None:
    """Whether the MQTT client (in this process or the intake's) is connected; None
    without sensors."""
    if worker.mqtt is not None:
        return worker.mqtt.connected.is_set()
    if worker.sensors is not None:
        return worker.sensors.mqtt is not None and worker.sensors.mqtt.connected
    return None


class EdgeCollector:
    """Every ``streetwatch_*`` family of the edge worker, read when scraped."""

    def __init__(self, worker: EdgeWorker) -> None:
        self.worker = worker

    def collect(self) -> Iterable[Metric]:
        yield from self._cameras(list(self.worker.cameras.values()))
        yield from self._alerts()
        yield from self._outbox()
        yield from self._disk()
        yield from self._sensors()
        yield from self._suppressions()

    def _cameras(self, runs: list[CameraRun]) -> Iterable[Metric]:
        cam = ["camera"]
        decoded = counter("streetwatch_camera_frames_decoded", "Frames decoded", cam)
        analysed = counter("streetwatch_camera_frames_analysed", "Frames analysed", cam)
        detector = SummaryMetricFamily(
            "streetwatch_camera_detector_seconds",
            "Detector runs (count) and the seconds they took (sum)",
            labels=cam,
        )
        regions = counter(
            "streetwatch_camera_region_runs",
            "Detector runs on a crop around the motion (part of the detector's count)",
            cam,
        )
        gated = gauge(
            "streetwatch_camera_motion_gated_ratio",
            "Share of the analysed frames the detector did not run on (nothing moved), "
            "since the camera started",
            cam,
        )
        target = gauge(
            "streetwatch_camera_analysis_fps_target",
            "Frames per second the camera should analyse ([[cameras]] analysis_fps)",
            cam,
        )
        up = gauge(
            "streetwatch_camera_up", "1 while frames come in from the camera, 0 otherwise", cam
        )
        alerts = counter("streetwatch_camera_alerts", "Alerts the camera's rules raised", cam)
        pending = gauge(
            "streetwatch_camera_pending_alerts",
            "Alerts raised and waiting for their clip or blurred pictures before the outbox",
            cam,
        )
        reconnects = counter(
            "streetwatch_camera_reconnects", "Connection attempts after the first", cam
        )
        stalls = counter("streetwatch_camera_stalls", "Reads that timed out", cam)
        errors = counter(
            "streetwatch_camera_errors", "Times the camera's source failed for good", cam
        )
        clips = counter(
            "streetwatch_camera_clip_failures",
            "Alerts that went without their clip, per reason",
            [*cam, "reason"],
        )
        pictures = counter(
            "streetwatch_camera_snapshot_failures",
            "Alerts that went without their snapshot and frame, per reason",
            [*cam, "reason"],
        )
        fallbacks = counter(
            "streetwatch_camera_evidence_fallbacks",
            "Snapshots drawn on the analysed sub-stream for want of a main-stream frame",
            cam,
        )
        suppressed = counter(
            "streetwatch_camera_suppressed_detections",
            "Detections that suppressions hid from the rules, per kind",
            [*cam, "kind"],
        )
        camera_errors = snapshot(self.worker.stats.camera_errors)
        for run in runs:
            c = [run.camera_id]
            source, worker, timed = run.source, run.worker, run.detector
            decoded.add_metric(c, source.frames_decoded if source else 0)
            reconnects.add_metric(c, source.reconnects if source else 0)
            stalls.add_metric(c, source.stalls if source else 0)
            n = worker.analysed if worker else 0
            analysed.add_metric(c, n)
            runs_, seconds = (timed.runs, timed.seconds) if timed else (0, 0.0)
            detector.add_metric(c, count_value=runs_, sum_value=seconds)
            region_runs = worker.region_runs if worker else 0
            regions.add_metric(c, region_runs)
            # frames with a run: runs less the region runs that were redone whole
            ran = runs_ - (worker.region_fallbacks if worker else 0)
            gated.add_metric(c, max(0.0, 1 - ran / n) if n else 0.0)
            target.add_metric(c, run.analysis_fps)
            up.add_metric(c, 1.0 if run.state in LIVE and n else 0.0)
            alerts.add_metric(c, worker.alerts if worker else 0)
            pending.add_metric(c, len(worker.pending) if worker else 0)
            errors.add_metric(c, camera_errors.get(run.camera_id, 0))
            fallbacks.add_metric(c, worker.evidence_fallbacks if worker else 0)
            for reason, count in snapshot(worker.clip_failures if worker else {}).items():
                clips.add_metric([*c, reason], count)
            for reason, count in snapshot(worker.snapshot_failures if worker else {}).items():
                pictures.add_metric([*c, reason], count)
            for kind, count in snapshot(
                self.worker.stats.suppressed.get(run.camera_id, {})
            ).items():
                suppressed.add_metric([*c, kind], count)
        yield from (decoded, analysed, detector, regions, gated, target, up, alerts, pending)
        yield from (reconnects, stalls, errors, clips, pictures, fallbacks, suppressed)

    def _alerts(self) -> Iterable[Metric]:
        stats = self.worker.stats
        raised = counter(
            "streetwatch_edge_alerts_raised",
            "Alerts put in the outbox, per source kind (camera, sensor, box) and category",
            ["source_kind", "category"],
        )
        for (kind, category), n in snapshot(stats.raised).items():
            raised.add_metric([kind, category], n)
        delivered = counter(
            "streetwatch_edge_alerts_delivered", "Alerts Kafka acknowledged (acks=all)"
        )
        delivered.add_metric([], stats.alerts)
        dead = counter(
            "streetwatch_edge_dead_letters",
            "Sensor messages that could not be used (dead letters put in the outbox), per reason",
            ["reason"],
        )
        for reason, n in snapshot(stats.rejects).items():
            dead.add_metric([reason], n)
        dead_sent = counter(
            "streetwatch_edge_dead_letters_delivered", "Dead letters Kafka acknowledged"
        )
        dead_sent.add_metric([], stats.dead_letters_sent)
        yield from (raised, delivered, dead, dead_sent)

    def _outbox(self) -> Iterable[Metric]:
        worker = self.worker
        backlog = worker.outbox.backlog()
        now = time.time()
        entries = gauge(
            "streetwatch_outbox_entries", "Entries waiting in the outbox, per lane", ["lane"]
        )
        oldest = gauge(
            "streetwatch_outbox_oldest_age_seconds",
            "Age of the oldest entry waiting in the lane (0 when it is empty)",
            ["lane"],
        )
        for lane in LANES:
            n, put_at = backlog.get(lane, (0, now))
            entries.add_metric([lane], n)
            oldest.add_metric([lane], max(0.0, now - put_at) if n else 0.0)
        delivered = counter(
            "streetwatch_outbox_delivered", "Entries delivered and deleted, per lane", ["lane"]
        )
        failures = counter(
            "streetwatch_outbox_send_failures",
            "Batches the lane's uplink refused or timed out (retried), per lane",
            ["lane"],
        )
        for f in worker.forwarders:
            delivered.add_metric([f.lane], f.delivered)
            failures.add_metric([f.lane], f.failures)
        kafka = gauge(
            "streetwatch_kafka_connected",
            "1 when the alert sink reached Kafka and the last delivery tried on each Kafka "
            "lane was acknowledged",
        )
        kafka.add_metric([], 1.0 if kafka_connected(worker) else 0.0)
        yield from (entries, oldest, delivered, failures, kafka)
        if worker.upload:
            evidence = gauge(
                "streetwatch_evidence_service_connected",
                "1 when the last upload tried to the evidence service went through",
            )
            evidence.add_metric([], 1.0 if up_to_date([worker.evidence_out]) else 0.0)
            yield evidence

    def _disk(self) -> Iterable[Metric]:
        disk = self.worker.disk
        free = gauge("streetwatch_disk_free_bytes", "Free space on the evidence disk")
        free.add_metric([], disk.free_bytes())
        floor = gauge("streetwatch_disk_min_free_bytes", "The floor kept free ([edge] min_free_mb)")
        floor.add_metric([], disk.min_free)
        low = gauge(
            "streetwatch_disk_low",
            "1 while the edge_disk_low health alert stands (evicting could not keep the floor)",
        )
        low.add_metric([], 1.0 if disk.low_since is not None else 0.0)
        evicted = counter(
            "streetwatch_evidence_evicted_files",
            "Evidence files deleted (the centre had them) to keep the floor",
        )
        evicted.add_metric([], disk.evicted)
        yield from (free, floor, low, evicted)

    def _sensors(self) -> Iterable[Metric]:
        worker = self.worker
        connected = mqtt_connected(worker)
        if connected is None:
            return  # no sensors on this box
        up = gauge("streetwatch_mqtt_connected", "1 while the MQTT client is connected")
        up.add_metric([], 1.0 if connected else 0.0)
        readings = counter("streetwatch_sensor_readings", "Sensor messages that passed every check")
        readings.add_metric([], worker.stats.readings)
        devices = gauge("streetwatch_sensor_devices", "Sensor devices configured")
        devices.add_metric([], len(worker.registry))
        yield from (up, readings, devices)
        client: dict[str, int] = {}
        if worker.mqtt is not None:
            st = worker.mqtt.stats
            client = {
                "messages": st.messages,
                "connects": st.connects,
                "disconnects": st.disconnects,
                "connect_failures": st.connect_failures,
                "refusals": st.refusals,
                "redelivered": st.redelivered,
            }
        elif worker.sensors is not None:
            restarts = counter(
                "streetwatch_sensor_process_restarts",
                "Times the sensor processes died and were started again",
            )
            restarts.add_metric([], worker.sensors.restarts)
            yield restarts
            state = worker.sensors.mqtt
            if state is not None:
                client = {
                    "messages": state.messages,
                    "connects": state.connects,
                    "disconnects": state.disconnects,
                    "connect_failures": state.connect_failures,
                    "refusals": state.refusals,
                    "redelivered": state.redelivered,
                }
        docs = {
            "messages": "MQTT messages taken in (since the intake started)",
            "connects": "Successful MQTT connections",
            "disconnects": "MQTT connections lost or closed",
            "connect_failures": "MQTT connection attempts that failed before the broker answered",
            "refusals": "MQTT connections the broker refused (login, client id)",
            "redelivered": "MQTT messages the broker delivered again (dup flag)",
        }
        for key, doc in docs.items():
            family = counter(f"streetwatch_mqtt_{key}", doc)
            family.add_metric([], client.get(key, 0))
            yield family

    def _suppressions(self) -> Iterable[Metric]:
        if not self.worker.cameras:
            return
        rejects = counter(
            "streetwatch_suppression_rejects",
            "Suppression messages that could not be used, per reason",
            ["reason"],
        )
        for reason, n in snapshot(self.worker.stats.suppression_rejects).items():
            rejects.add_metric([reason], n)
        applied = counter(
            "streetwatch_suppression_updates_applied",
            "Suppression messages applied to the cameras' book",
        )
        applied.add_metric([], self.worker.suppression_feed.applied)
        yield from (rejects, applied)


def _camera_problem(run: CameraRun) -> str | None:
    if run.state in DONE:
        return None
    if run.state == "failed":
        return f"camera {run.camera_id}: failed: {run.error}"
    if run.state not in LIVE:
        return f"camera {run.camera_id}: {run.state}"
    if run.worker is None or run.worker.analysed == 0:
        return f"camera {run.camera_id}: no frame analysed yet"
    return None


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t else "-"


def edge_readiness(worker: EdgeWorker) -> Readiness:
    """Ready when every camera runs (or its file ended), the outbox can be written,
    Kafka takes what it is sent and MQTT (with sensors) is connected."""
    reasons: list[str] = []
    bootstrap = worker.cfg.kafka.bootstrap
    if not worker.sink_started:
        reasons.append(
            f"kafka: not reached yet at {bootstrap} ({worker.connect_attempts} attempts; "
            "cameras and sensors run, alerts wait in the outbox)"
        )
    elif not kafka_connected(worker):
        failed = max(worker.alerts_out, worker.dead_out, key=lambda f: f.last_failure or 0)
        reasons.append(
            f"kafka: the last delivery to {bootstrap} failed at {_when(failed.last_failure)} "
            f"({failed.last_error}); alerts wait in the outbox"
        )
    elif not worker.ready.is_set():
        reasons.append("starting: sensors and cameras")
    for run in worker.cameras.values():
        problem = _camera_problem(run)
        if problem:
            reasons.append(problem)
    problem = worker.outbox.writable()
    if problem:
        reasons.append(f"outbox: not writable: {problem}")
    backlog = {} if problem else {lane: n for lane, (n, _) in worker.outbox.backlog().items()}
    free = worker.disk.free_bytes()
    if free < MIN_FREE_BYTES:
        reasons.append(f"outbox: the disk is full ({free} bytes free)")
    connected = mqtt_connected(worker)
    if connected is False:
        mqtt = worker.cfg.mqtt
        reasons.append(f"mqtt: not connected to {mqtt.host}:{mqtt.port}")
    facts: dict[str, object] = {
        "box_id": worker.cfg.edge.box_id,
        "cameras": {run.camera_id: run.state for run in worker.cameras.values()},
        "kafka_connected": kafka_connected(worker),
        "mqtt_connected": connected,
        "outbox": backlog,
    }
    return Readiness(reasons, facts)


def edge_ops_server(worker: EdgeWorker) -> OpsServer | None:
    """The worker's ``/metrics``, ``/healthz`` and ``/readyz`` at ``[edge] http`` (None
    when that is empty or port 0); the caller starts and stops it."""
    address = listen_address(worker.cfg.edge.http)
    if address is None:
        return None
    registry = new_registry()
    registry.register(EdgeCollector(worker))

    def facts() -> dict[str, object]:
        return {
            "box_id": worker.cfg.edge.box_id,
            "cameras": len(worker.cameras),
            "sensors": len(worker.registry),
        }

    return OpsServer("edge", address, registry, lambda: edge_readiness(worker), facts=facts)
