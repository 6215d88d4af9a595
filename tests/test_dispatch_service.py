"""The dispatch service on a central machine: started from a file with only its own
sections, it folds alerts into cases and never loads the edge box's stack."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from core.kafka import KafkaConfig, ensure_topics
from core.records import Alert, Place, SourceKind
from streetwatch.brokers import RunningBroker
from streetwatch.processes import Child
from tests.support.kafka_helpers import Topic

pytestmark = pytest.mark.integration

EDGE_LIBRARIES = ("cv2", "onnxruntime", "libavcodec", "av/_core")


def dispatch_only_toml(tmp: Path, bootstrap: str, run: str) -> str:
    return f"""
[kafka]
bootstrap = "{bootstrap}"
alerts_topic = "alerts-{run}"
dispatch_topic = "dispatch-{run}"
status_topic = "status-{run}"
dead_letter_topic = "dead-{run}"
partitions = 2

[dispatch]
app_id = "centre-{run}"
datadir = "{tmp / "faust"}"
session_timeout_s = 6.0

[store]
url = "sqlite:///{tmp / "cases.db"}"

[routing]
default_owner = "城运中心"

[[routing.rules]]
category = "illegal_stall"
owner = "城管中队"

[sla]
timezone = "Asia/Shanghai"
"""


def stall_alert() -> Alert:
    observed = datetime.now(UTC).replace(microsecond=0)
    return Alert(
        alert_id=Alert.make_id("cam-9", "stall", "market-gate", observed),
        category="illegal_stall",
        place=Place(place_id="market-gate", name="Market gate"),
        source_kind=SourceKind.CAMERA,
        source_id="cam-9",
        rule_id="stall",
        rule_text="a stall stands at the gate",
        first_seen=observed - timedelta(seconds=60),
        observed_at=observed,
        confidence=0.7,
    )


def mapped_libraries(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {line.split()[-1] for line in maps.splitlines() if "/" in line}


async def test_a_dispatch_only_file_starts_the_service_without_the_edge_stack(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    path = tmp_path / "dispatch.toml"
    path.write_text(dispatch_only_toml(tmp_path, tansu.address, run))
    kafka = KafkaConfig(
        bootstrap=tansu.address,
        alerts_topic=f"alerts-{run}",
        dispatch_topic=f"dispatch-{run}",
        status_topic=f"status-{run}",
        partitions=2,
    )
    await ensure_topics(kafka)
    worker = Child(
        "dispatch",
        [sys.executable, "-m", "streetwatch.cli", "dispatch", "--config", str(path)],
        log=tmp_path / "dispatch.log",
    )
    try:
        alert = stall_alert()
        async with Topic(kafka, kafka.dispatch_topic) as dispatch:
            producer = AIOKafkaProducer(bootstrap_servers=tansu.address, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(
                    kafka.alerts_topic, alert.to_json_bytes(), key=b"market-gate"
                )
            finally:
                await producer.stop()
            await dispatch.wait_for({alert.alert_id})
            (case,) = dispatch.cases().values()
        assert case.category == "illegal_stall" and case.route is not None
        assert case.route.owner == "城管中队"  # routed by the file's responsibility list
        assert worker.running()
        loaded = mapped_libraries(worker.proc.pid)
        edge_stack = sorted(lib for lib in loaded if any(n in lib for n in EDGE_LIBRARIES))
        assert edge_stack == [], edge_stack
        assert any("faust" in lib or "python" in lib for lib in loaded)  # the probe sees libs
    finally:
        worker.stop()
