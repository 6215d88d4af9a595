"""Metrics, health and JSON logs, without a broker: the collectors over the workers'
own counters (fake cameras, sources and stores standing in for the running parts),
readiness, the HTTP endpoints on 127.0.0.1 in this process, and the log formats.

tests/test_observability_live.py scrapes real `streetwatch edge` and `dispatch`
processes while alerts flow."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiokafka import TopicPartition
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from core.logs import JsonLogFormatter, event_fields, root_log_format
from core.observability import (
    METRIC_NAME,
    OpsServer,
    Readiness,
    listen_address,
    new_registry,
)
from core.version import streetwatch_version
from detectors.base import Frame
from detectors.detections import Detections
from edge.config import EdgeServiceConfig, parse_edge_config
from edge.metrics import EdgeCollector, TimedDetector, edge_readiness, kafka_connected
from edge.sensor_wire import MqttState
from edge.worker import EdgeWorker
from pipeline.alert_intake import AlertIntake
from pipeline.case_engine import CaseEngine, EngineStats
from pipeline.metrics import DispatchCollector, DispatchParts, DispatchStats, dispatch_readiness
from pipeline.store import CaseStore
from streetwatch.cli import main
from streetwatch.processes import free_port
from tests.support.factories import alert, dets
from tests.support.fakes import MemoryAlertSink
from tests.support.paths import ROOT, VTEST

Families = dict[str, Any]

#: the installed release, as the package metadata has it (pyproject.toml's [project] version)
VERSION = importlib.metadata.version("streetwatch")


def scrape(collector: object) -> Families:
    """The collector's families as Prometheus would read them, by name."""
    registry = new_registry()
    registry.register(collector)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: Families, name: str, **labels: str) -> float:
    """The one sample called ``name`` with ``labels``, whatever family holds it."""
    found = [
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == name and s.labels == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def assert_named_by_convention(families: Families) -> None:
    for family in families.values():
        assert METRIC_NAME.fullmatch(family.name), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        assert not family.name.endswith("_total")


# -- the edge worker ------------------------------------------------------------


@dataclass
class FakeCamera:
    """What the collector reads from a :class:`~edge.camera_worker.CameraWorker`."""

    analysed: int = 0
    region_runs: int = 0
    region_fallbacks: int = 0
    alerts: int = 0
    evidence_fallbacks: int = 0
    pending: deque[object] = field(default_factory=deque)
    clip_failures: Counter[str] = field(default_factory=Counter)
    snapshot_failures: Counter[str] = field(default_factory=Counter)


@dataclass
class FakeSource:
    """What the collector reads from a frame source."""

    frames_decoded: int = 0
    reconnects: int = 0
    stalls: int = 0


class StillDetector:
    labels: tuple[str, ...] = ("person", "car")

    def detect(self, frame: Frame) -> Detections:
        return dets()


def edge_config(tmp: Path, *, devices: int = 0) -> EdgeServiceConfig:
    return parse_edge_config(
        {
            "edge": {"box_id": "ws-1", "evidence_dir": str(tmp / "evidence")},
            "places": [{"place_id": "bay"}],
            "cameras": [
                {
                    "camera_id": "cam-1",
                    "url": str(VTEST),
                    "analysis_fps": 2.0,
                    "zones": [
                        {"zone_id": "z", "place": "bay", "polygon": [[0, 0], [9, 0], [9, 9]]}
                    ],
                }
            ],
            "devices": [
                {"device_id": f"sm-{i}", "type": "smoke", "town": "t1", "place_id": "bay"}
                for i in range(devices)
            ],
            "neuron": {"separate_processes": False},
        }
    )


def running_camera(worker: EdgeWorker) -> FakeCamera:
    """Make cam-1 look like a camera that analysed 10 frames, 4 of them with the
    detector, one of those on a region, and raised 2 alerts."""
    run = worker.cameras["cam-1"]
    camera = FakeCamera(analysed=10, region_runs=1, alerts=2)
    camera.clip_failures["timeout"] += 1
    camera.snapshot_failures["OSError"] += 2
    camera.pending.append(object())
    run.worker = cast(Any, camera)
    run.source = cast(Any, FakeSource(frames_decoded=50, reconnects=1))
    run.detector = TimedDetector(StillDetector())
    for _ in range(4):
        run.detector.detect(cast(Frame, None))
    run.state = "open"
    worker.stats.suppressed["cam-1"]["mask"] += 3
    return camera


def test_the_edge_collector_reads_the_workers_counters(tmp_path: Path) -> None:
    worker = EdgeWorker(edge_config(tmp_path), MemoryAlertSink())
    running_camera(worker)
    worker.stats.count_raised([alert(1), alert(2), alert(3, category="crowd_gathering")])
    worker.stats.rejects["duplicate"] += 2
    worker.stats.alerts = 1
    worker.outbox.put_records([alert(1), alert(2)])

    families = scrape(EdgeCollector(worker))

    cam = {"camera": "cam-1"}
    assert value(families, "streetwatch_camera_frames_decoded_total", **cam) == 50
    assert value(families, "streetwatch_camera_frames_analysed_total", **cam) == 10
    assert value(families, "streetwatch_camera_detector_seconds_count", **cam) == 4
    assert value(families, "streetwatch_camera_detector_seconds_sum", **cam) >= 0
    assert families["streetwatch_camera_detector_seconds"].type == "summary"
    assert value(families, "streetwatch_camera_motion_gated_ratio", **cam) == pytest.approx(0.6)
    assert value(families, "streetwatch_camera_analysis_fps_target", **cam) == 2.0
    assert value(families, "streetwatch_camera_up", **cam) == 1
    assert value(families, "streetwatch_camera_pending_alerts", **cam) == 1
    assert value(families, "streetwatch_camera_reconnects_total", **cam) == 1
    assert value(families, "streetwatch_camera_clip_failures_total", reason="timeout", **cam) == 1
    assert (
        value(families, "streetwatch_camera_snapshot_failures_total", reason="OSError", **cam) == 2
    )
    assert (
        value(families, "streetwatch_camera_suppressed_detections_total", kind="mask", **cam) == 3
    )
    raised = "streetwatch_edge_alerts_raised_total"
    assert value(families, raised, source_kind="camera", category="illegal_parking") == 2
    assert value(families, raised, source_kind="camera", category="crowd_gathering") == 1
    assert value(families, "streetwatch_edge_alerts_delivered_total") == 1
    assert value(families, "streetwatch_edge_dead_letters_total", reason="duplicate") == 2
    assert value(families, "streetwatch_outbox_entries", lane="alerts") == 2
    assert value(families, "streetwatch_outbox_entries", lane="dead_letters") == 0
    assert value(families, "streetwatch_outbox_oldest_age_seconds", lane="alerts") >= 0
    assert value(families, "streetwatch_kafka_connected") == 0  # the sink never started
    assert value(families, "streetwatch_disk_free_bytes") > 0
    assert "streetwatch_mqtt_connected" not in families  # no sensors on this box
    assert "streetwatch_process_cpu_seconds" in families
    assert_named_by_convention(families)


def test_the_edge_collector_shows_the_mqtt_client_with_sensors(tmp_path: Path) -> None:
    worker = EdgeWorker(edge_config(tmp_path, devices=2), MemoryAlertSink())
    worker.stats.readings = 7
    worker.feed = cast(Any, object())
    worker.mqtt = cast(Any, FakeMqtt())
    families = scrape(EdgeCollector(worker))
    assert value(families, "streetwatch_mqtt_connected") == 0
    assert value(families, "streetwatch_sensor_readings_total") == 7
    assert value(families, "streetwatch_sensor_devices") == 2
    assert value(families, "streetwatch_mqtt_messages_total") == 9
    assert_named_by_convention(families)


@dataclass
class FakeMqttStats:
    messages: int = 9
    connects: int = 1
    disconnects: int = 1
    connect_failures: int = 0
    refusals: int = 0
    redelivered: int = 0


class FakeMqtt:
    """A disconnected MQTT client that took 9 messages."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.stats = FakeMqttStats()


@pytest.mark.parametrize(
    ("started", "alerts", "dead", "connected"),
    [
        (False, (None, None), (None, None), False),  # never reached the broker
        (True, (None, None), (None, None), True),  # reached it, nothing sent since
        (True, (10.0, None), (None, None), True),
        (True, (10.0, 20.0), (None, None), False),  # the last try failed
        (True, (30.0, 20.0), (None, None), True),  # ... and the next went through
        (True, (30.0, 20.0), (None, 25.0), False),  # a dead letter failed after
    ],
)
def test_kafka_is_connected_while_the_last_delivery_was_acknowledged(
    tmp_path: Path,
    started: bool,
    alerts: tuple[float | None, float | None],
    dead: tuple[float | None, float | None],
    connected: bool,
) -> None:
    worker = EdgeWorker(edge_config(tmp_path), MemoryAlertSink())
    worker.sink_started = started
    worker.alerts_out.last_success, worker.alerts_out.last_failure = alerts
    worker.dead_out.last_success, worker.dead_out.last_failure = dead
    assert kafka_connected(worker) is connected


def test_edge_readiness_names_what_is_missing(tmp_path: Path) -> None:
    worker = EdgeWorker(edge_config(tmp_path), MemoryAlertSink())
    waiting = edge_readiness(worker)
    assert not waiting.ready
    assert any(r.startswith("kafka: not reached yet at 127.0.0.1:9092") for r in waiting.reasons)
    assert "camera cam-1: starting" in waiting.reasons

    worker.sink_started = True
    worker.ready.set()
    running_camera(worker)
    ready = edge_readiness(worker)
    assert ready.ready, ready.reasons
    assert ready.facts["cameras"] == {"cam-1": "open"}

    worker.alerts_out.last_failure, worker.alerts_out.last_error = 1e9, "KafkaTimeoutError: x"
    worker.cameras["cam-1"].state, worker.cameras["cam-1"].error = "failed", "cannot open"
    down = edge_readiness(worker)
    assert [r.split(":")[0] for r in down.reasons] == ["kafka", "camera cam-1"]
    assert "KafkaTimeoutError" in down.reasons[0]
    assert down.reasons[1] == "camera cam-1: failed: cannot open"

    worker.cameras["cam-1"].state = "finished"  # a file that ended is not a problem
    worker.alerts_out.last_success = 2e9
    assert edge_readiness(worker).ready


def test_edge_readiness_says_when_the_outbox_cannot_be_written(tmp_path: Path) -> None:
    worker = EdgeWorker(edge_config(tmp_path), MemoryAlertSink())
    worker.outbox.close()
    reasons = edge_readiness(worker).reasons
    assert "outbox: not writable: ProgrammingError: Cannot operate on a closed database." in reasons


# -- the dispatch worker ----------------------------------------------------------


@dataclass
class FakeIntake:
    batches: int = 3
    failures: int = 1
    poisoned: int = 0
    assignment: frozenset[TopicPartition] | None = None


@dataclass
class FakeEngine:
    stats: EngineStats = field(default_factory=EngineStats)


class FakeStore:
    def __init__(self, waiting: int | None) -> None:
        self.waiting = waiting

    def unpublished_count(self) -> int:
        if self.waiting is None:
            raise OSError("connection refused")
        return self.waiting


def dispatch_parts(waiting: int | None, assigned: bool = True) -> DispatchParts:
    engine = FakeEngine()
    engine.stats.alerts, engine.stats.duplicates = 12, 2
    engine.stats.updates_applied, engine.stats.updates_repeated = 3, 1
    engine.stats.rejected["invalid_transition"] += 2
    engine.stats.sla_events = 1
    stats = DispatchStats()
    stats.published.update(["opened", "opened", "updated"])
    stats.store_errors["tick"] += 1
    stats.invalid["alert"] += 1
    intake = FakeIntake(assignment=frozenset({TopicPartition("alerts", 0)}) if assigned else None)
    return DispatchParts(
        intake=cast(AlertIntake, intake),
        engine=cast(CaseEngine, engine),
        store=cast(CaseStore, FakeStore(waiting)),
        stats=stats,
        app_id="centre",
    )


def test_the_dispatch_collector_reads_the_workers_counters() -> None:
    families = scrape(DispatchCollector(dispatch_parts(waiting=5)))
    assert value(families, "streetwatch_dispatch_alerts_consumed_total") == 12
    assert value(families, "streetwatch_dispatch_alerts_duplicate_total") == 2
    assert value(families, "streetwatch_dispatch_alert_batches_total") == 3
    published = "streetwatch_dispatch_case_events_published_total"
    assert value(families, published, type="opened") == 2
    assert value(families, published, type="updated") == 1
    updates = "streetwatch_dispatch_status_updates_total"
    assert value(families, updates, outcome="applied") == 3
    assert value(families, updates, outcome="repeated") == 1
    assert value(families, updates, outcome="rejected") == 2
    rejected = "streetwatch_dispatch_status_updates_rejected_total"
    assert value(families, rejected, reason="invalid_transition") == 2
    assert value(families, "streetwatch_dispatch_sla_warnings_total") == 1
    assert value(families, "streetwatch_dispatch_store_errors_total", operation="tick") == 1
    assert value(families, "streetwatch_dispatch_invalid_input_total", input="alert") == 1
    assert value(families, "streetwatch_dispatch_unpublished_events") == 5
    assert value(families, "streetwatch_dispatch_store_up") == 1
    assert value(families, "streetwatch_dispatch_assigned_partitions") == 1
    assert_named_by_convention(families)


def test_the_dispatch_collector_survives_a_store_that_does_not_answer() -> None:
    families = scrape(DispatchCollector(dispatch_parts(waiting=None)))
    assert value(families, "streetwatch_dispatch_store_up") == 0
    assert "streetwatch_dispatch_unpublished_events" not in families


def test_dispatch_readiness() -> None:
    assert dispatch_readiness(dispatch_parts(waiting=0)).ready
    down = dispatch_readiness(dispatch_parts(waiting=None, assigned=False))
    assert down.reasons == [
        "kafka: the alert intake has not joined its consumer group yet",
        "store: OSError: connection refused",
    ]


def served_names(families: Families) -> set[str]:
    """The names a reader queries: counters with ``_total``, others as they are."""
    return {f"{f.name}_total" if f.type == "counter" else f.name for f in families.values()}


def test_the_readme_lists_every_metric_and_no_other(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 40)
    cfg = edge_config(tmp_path, devices=1)
    uploads = cfg.edge.model_copy(
        update={"evidence_url": "http://127.0.0.1:1", "evidence_token_file": str(token)}
    )
    box = EdgeWorker(cfg.model_copy(update={"edge": uploads}), MemoryAlertSink())
    box.mqtt = cast(Any, FakeMqtt())
    in_process = scrape(EdgeCollector(box))
    box.mqtt, box.sensors = None, cast(Any, FakeSensors())
    separate = scrape(EdgeCollector(box))
    centre = scrape(DispatchCollector(dispatch_parts(waiting=0)))
    # and what every worker's server adds (the loop's lag, the release)
    ops = OpsServer("edge", ("127.0.0.1", 0), new_registry(), Readiness)
    both = {
        f.name: f for f in text_string_to_metric_families(generate_latest(ops.registry).decode())
    }
    served = set().union(*(served_names(f) for f in (in_process, separate, centre, both)))
    assert {"streetwatch_event_loop_lag_seconds", "streetwatch_build_info"} <= served

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Operating a box: metrics and health")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `(streetwatch_[a-z0-9_]+)`", section, re.MULTILINE))
    process = {n for n in served if n.startswith("streetwatch_process_")}
    assert served - process == listed - {"streetwatch_process_"}
    assert "`streetwatch_process_*`" in section


@dataclass
class FakeSensors:
    """A sensor service whose intake reported a connected MQTT client."""

    restarts: int = 1
    mqtt: MqttState = field(default_factory=lambda: MqttState(True, 5, 1, 0, 0, 0, 0))


# -- the endpoints -------------------------------------------------------------


async def test_the_endpoints_answer_and_a_taken_port_does_not_stop_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    state = {"ready": False}

    def ready() -> Readiness:
        return Readiness([] if state["ready"] else ["kafka: down"], {"box_id": "ws-1"})

    server = OpsServer("edge", ("127.0.0.1", port), new_registry(), ready)
    await server.start()
    taken = OpsServer("edge", ("127.0.0.1", port), new_registry(), ready)
    try:
        with caplog.at_level(logging.ERROR, "streetwatch.ops"):
            await taken.start()  # logs, and keeps trying in the background
        assert not taken.bound
        assert "event=http_unavailable service=edge" in caplog.text
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                families = {f.name: f for f in text_string_to_metric_families(await r.text())}
                assert "streetwatch_event_loop_lag_seconds" in families
                assert value(families, "streetwatch_build_info", version=VERSION) == 1
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 200
                health = await r.json()
                assert health["status"] == "ok" and health["service"] == "edge"
                assert health["version"] == VERSION
            async with http.get(f"{url}/readyz") as r:
                assert r.status == 503
                assert await r.json() == {
                    "service": "edge",
                    "ready": False,
                    "reasons": ["kafka: down"],
                    "box_id": "ws-1",
                }
            state["ready"] = True
            async with http.get(f"{url}/readyz") as r:
                assert r.status == 200
    finally:
        await taken.stop()
        await server.stop()


def test_the_version_is_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert streetwatch_version() == VERSION
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"streetwatch {VERSION}\n"


def test_listen_addresses() -> None:
    assert listen_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert listen_address("[::1]:9108") == ("::1", 9108)
    assert listen_address("") is None
    assert listen_address("0.0.0.0:0") is None
    for bad in ("9108", "host:", "host:x", "host:70000"):
        with pytest.raises(ValueError, match="is not host:port"):
            listen_address(bad)
    with pytest.raises(ValidationError, match=r"edge\.http"):
        EdgeServiceConfig.model_validate({"edge": {"http": "localhost"}})


# -- JSON logs -----------------------------------------------------------------


def test_json_lines_carry_the_events_pairs() -> None:
    record = logging.LogRecord(
        "streetwatch.edge",
        logging.WARNING,
        __file__,
        1,
        "event=outbox_send_failed lane=%s entries=%d error=%s",
        ("alerts", 3, "KafkaTimeoutError"),
        None,
    )
    line = json.loads(JsonLogFormatter().format(record))
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["level"] == "WARNING" and line["logger"] == "streetwatch.edge"
    assert line["time"].endswith("+00:00")
    assert line["event"] == "outbox_send_failed"
    assert (line["lane"], line["entries"], line["error"]) == ("alerts", "3", "KafkaTimeoutError")
    assert event_fields("kafka 127.0.0.1:1 not ready (x=y)") == {}  # not an event line
    assert event_fields("event=x message=hijack level=low")["message"] == "hijack"
    record.msg, record.args = "event=x message=hijack level=low", ()
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "event=x message=hijack level=low" and line["level"] == "WARNING"


def test_the_log_format_option_switches_every_handler(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from streetwatch.cli import _setup_logging

    _setup_logging("INFO", tmp_path / "worker.log", fmt="json")
    assert root_log_format() == "json"
    logging.getLogger("streetwatch.edge").info("event=ready box=%s cameras=%d", "ws-1", 2)
    try:
        exc_line = "event=camera_error camera=cam-1: unexpected failure"
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("streetwatch.edge").exception(exc_line)
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = capsys.readouterr().err.splitlines()
    file_lines = (tmp_path / "worker.log").read_text().splitlines()
    for text in (lines, file_lines):
        parsed = [json.loads(line) for line in text]
        assert parsed[0]["event"] == "ready" and parsed[0]["box"] == "ws-1"
        assert "RuntimeError: boom" in parsed[1]["exc_info"]
    _setup_logging("INFO")
    assert root_log_format() == "text"
