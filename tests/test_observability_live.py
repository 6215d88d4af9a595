"""Metrics, health and JSON logs of real `streetwatch edge` and `streetwatch dispatch`
processes: scraped over HTTP while alerts flow (a parked van on vtest.avi, a smoke
alarm over MQTT), parsed as Prometheus would, every family named by the conventions;
and an edge box that cannot reach Kafka says so on /readyz, in JSON log lines."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.kafka import KafkaConfig, ensure_topics
from core.observability import METRIC_NAME
from streetwatch.brokers import RunningBroker
from streetwatch.processes import Child, free_port
from tests.support.box_runs import smoke_alarm
from tests.support.edge_configs import BAY_PLACE, parking_camera
from tests.support.kafka_helpers import fresh_kafka
from tests.support.paths import VTEST
from tests.support.polling import until

pytestmark = pytest.mark.integration

Families = dict[str, Any]

# family -> (type, label names of its samples): what a box with a camera and a sensor serves
EDGE_FAMILIES = {
    "streetwatch_camera_frames_decoded": ("counter", {"camera"}),
    "streetwatch_camera_frames_analysed": ("counter", {"camera"}),
    "streetwatch_camera_detector_seconds": ("summary", {"camera"}),
    "streetwatch_camera_motion_gated_ratio": ("gauge", {"camera"}),
    "streetwatch_camera_analysis_fps_target": ("gauge", {"camera"}),
    "streetwatch_camera_up": ("gauge", {"camera"}),
    "streetwatch_camera_pending_alerts": ("gauge", {"camera"}),
    "streetwatch_camera_alerts": ("counter", {"camera"}),
    "streetwatch_camera_suppressed_detections": ("counter", {"camera", "kind"}),
    "streetwatch_edge_alerts_raised": ("counter", {"source_kind", "category"}),
    "streetwatch_edge_alerts_delivered": ("counter", set()),
    "streetwatch_edge_dead_letters": ("counter", set()),  # none yet: no samples
    "streetwatch_outbox_entries": ("gauge", {"lane"}),
    "streetwatch_outbox_oldest_age_seconds": ("gauge", {"lane"}),
    "streetwatch_outbox_delivered": ("counter", {"lane"}),
    "streetwatch_kafka_connected": ("gauge", set()),
    "streetwatch_mqtt_connected": ("gauge", set()),
    "streetwatch_mqtt_messages": ("counter", set()),
    "streetwatch_sensor_readings": ("counter", set()),
    "streetwatch_disk_free_bytes": ("gauge", set()),
    "streetwatch_suppression_rejects": ("counter", set()),
    "streetwatch_event_loop_lag_seconds": ("gauge", set()),
    "streetwatch_process_cpu_seconds": ("counter", set()),
}
DISPATCH_FAMILIES = {
    "streetwatch_dispatch_alerts_consumed": ("counter", set()),
    "streetwatch_dispatch_case_events_published": ("counter", {"type"}),
    "streetwatch_dispatch_status_updates": ("counter", {"outcome"}),
    "streetwatch_dispatch_unpublished_events": ("gauge", set()),
    "streetwatch_dispatch_store_up": ("gauge", set()),
    "streetwatch_dispatch_store_errors": ("counter", set()),
    "streetwatch_dispatch_sla_warnings": ("counter", set()),
    "streetwatch_dispatch_assigned_partitions": ("gauge", set()),
}


async def get(url: str) -> tuple[int, str]:
    """Status and body; (0, why) when nothing answers yet."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(url) as r,
        ):
            return r.status, await r.text()
    except aiohttp.ClientError as exc:
        return 0, str(exc)


async def scrape(base: str) -> Families:
    status, text = await get(f"{base}/metrics")
    assert status == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}


def total(families: Families, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(
        float(s.value)
        for family in families.values()
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def check_families(families: Families, expected: dict[str, tuple[str, set[str]]]) -> None:
    for name, (kind, labels) in expected.items():
        assert name in families, f"{name} missing"
        family = families[name]
        assert family.type == kind, (name, family.type)
        for sample in family.samples:
            assert set(sample.labels) == labels, (name, sample.labels)
    for family in families.values():  # every family, not only those expected
        assert METRIC_NAME.fullmatch(family.name), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name


async def ready(base: str) -> bool:
    status, _ = await get(f"{base}/readyz")
    return status == 200


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log written with --log-format json, parsed (each must parse)."""
    lines = path.read_text(errors="replace").splitlines()
    assert lines, f"{path} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line in {path.name}: {line!r}")
    for record in parsed:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    return parsed


def edge_process(tmp: Path, name: str, sections: dict[str, object]) -> Child:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(sections))
    argv = [sys.executable, "-m", "streetwatch.cli", "--log-format", "json"]
    return Child(name, [*argv, "edge", "--config", str(path)], log=tmp / f"{name}.log")


def dispatch_process(tmp: Path, kafka: KafkaConfig, port: int) -> Child:
    sections = {
        "kafka": kafka.model_dump(),
        "dispatch": {
            "app_id": f"centre-{uuid.uuid4().hex[:8]}",
            "datadir": str(tmp / "faust"),
            "session_timeout_s": 6.0,
            "http": f"127.0.0.1:{port}",
        },
        "places": [BAY_PLACE],
        "store": {"url": f"sqlite:///{tmp / 'cases.db'}"},
    }
    path = tmp / "dispatch.json"
    path.write_text(json.dumps(sections))
    argv = [sys.executable, "-m", "streetwatch.cli", "--log-format", "json"]
    return Child("dispatch", [*argv, "dispatch", "--config", str(path)], log=tmp / "dispatch.log")


async def test_both_workers_serve_metrics_and_health_while_alerts_flow(
    tansu: RunningBroker, mosquitto: RunningBroker, tmp_path: Path
) -> None:
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    edge_url = f"http://127.0.0.1:{free_port()}"
    dispatch_port = free_port()
    dispatch_url = f"http://127.0.0.1:{dispatch_port}"
    dispatch = dispatch_process(tmp_path, kafka, dispatch_port)
    edge = edge_process(
        tmp_path,
        "edge",
        {
            "edge": {
                "box_id": "ws-metrics",
                "evidence_dir": str(tmp_path / "evidence"),
                "http": edge_url.removeprefix("http://"),
            },
            "kafka": kafka.model_dump(),
            "mqtt": {"port": mosquitto.port, "client_id": f"edge-{uuid.uuid4().hex[:8]}"},
            "places": [BAY_PLACE],
            "cameras": [parking_camera(VTEST, repeat_s=5.0, clips=False, loop=True)],
            "devices": [{"device_id": "sm-01", "type": "smoke", "town": "t1", "name": "Hall"}],
        },
    )
    try:
        await until(lambda: ready(edge_url), "the edge ready on /readyz", timeout=120, interval=0.5)
        status, body = await get(f"{edge_url}/healthz")
        assert status == 200 and json.loads(body)["box_id"] == "ws-metrics"
        first = await scrape(edge_url)
        check_families(first, EDGE_FAMILIES)
        assert total(first, "streetwatch_kafka_connected") == 1
        assert total(first, "streetwatch_mqtt_connected") == 1
        assert total(first, "streetwatch_camera_up", camera="cam-vtest") == 1

        await until(lambda: ready(dispatch_url), "dispatch ready", timeout=90, interval=0.5)
        await asyncio.to_thread(smoke_alarm, mosquitto.port, "sm-01")

        async def flowed() -> bool:
            now = await scrape(edge_url)
            raised = "streetwatch_edge_alerts_raised_total"
            return (
                total(now, raised, source_kind="camera") >= 2
                and total(now, raised, source_kind="sensor") >= 1
                and total(now, "streetwatch_edge_alerts_delivered_total") >= 3
            )

        await until(flowed, "camera and sensor alerts delivered", timeout=120, interval=1.0)
        second = await scrape(edge_url)
        check_families(second, EDGE_FAMILIES)
        for counter in (
            "streetwatch_camera_frames_decoded_total",
            "streetwatch_camera_frames_analysed_total",
            "streetwatch_edge_alerts_raised_total",
            "streetwatch_edge_alerts_delivered_total",
            "streetwatch_mqtt_messages_total",
            "streetwatch_sensor_readings_total",
        ):
            assert total(second, counter) > total(first, counter), counter
        # the detector runs when something moves in the bay, and every 10 s (motion gating)
        runs = "streetwatch_camera_detector_seconds_count"
        assert total(second, runs) >= total(first, runs) >= 1
        assert total(second, "streetwatch_camera_detector_seconds_sum") > 0
        assert total(second, "streetwatch_outbox_delivered_total", lane="alerts") >= 3

        async def folded() -> bool:
            now = await scrape(dispatch_url)
            published = "streetwatch_dispatch_case_events_published_total"
            return total(now, published, type="opened") >= 2  # the van, the smoke alarm

        await until(folded, "cases opened by the dispatch worker", timeout=120, interval=1.0)
        centre = await scrape(dispatch_url)
        check_families(centre, DISPATCH_FAMILIES)
        assert total(centre, "streetwatch_dispatch_alerts_consumed_total") >= 2
        assert total(centre, "streetwatch_dispatch_store_up") == 1
        assert total(centre, "streetwatch_dispatch_assigned_partitions") == kafka.partitions
        status, body = await get(f"{dispatch_url}/healthz")
        assert status == 200 and json.loads(body)["service"] == "dispatch"
        status, body = await get(f"{dispatch_url}/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
    finally:
        assert edge.stop(timeout=60) == 0
        dispatch.stop()
    events = {r.get("event") for r in json_lines(tmp_path / "dispatch.log")}
    assert {"http_serving", "cases_published"} <= events
    assert "ready" in {r.get("event") for r in json_lines(tmp_path / "edge.log")}


async def test_an_edge_box_without_kafka_is_not_ready_and_says_so_in_json(
    tmp_path: Path,
) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    base = f"http://127.0.0.1:{free_port()}"
    edge = edge_process(
        tmp_path,
        "edge",
        {
            "edge": {"box_id": "ws-cut-off", "evidence_dir": str(tmp_path / "evidence"),
                     "http": base.removeprefix("http://")},
            "kafka": {"bootstrap": nobody},
        },
    )  # fmt: skip
    try:

        async def answered() -> bool:
            status, _ = await get(f"{base}/readyz")
            return status != 0

        await until(answered, "/readyz answering", timeout=60, interval=0.2)
        status, body = await get(f"{base}/readyz")
        assert status == 503
        answer = json.loads(body)
        assert answer["ready"] is False
        assert answer["reasons"][0].startswith(f"kafka: not reached yet at {nobody}")
        status, _ = await get(f"{base}/healthz")
        assert status == 200  # alive all the same
        families = await scrape(base)
        assert total(families, "streetwatch_kafka_connected") == 0
        await until(
            lambda: nobody in (tmp_path / "edge.log").read_text(errors="replace"),
            "a retry to reach Kafka logged",
            timeout=30,
        )
    finally:
        edge.stop(timeout=5)
    records = json_lines(tmp_path / "edge.log")
    serving = [r for r in records if r.get("event") == "http_serving"]
    assert serving and serving[0]["url"] == base and serving[0]["logger"] == "streetwatch.ops"
    assert any(r["level"] == "WARNING" and nobody in r["message"] for r in records)
