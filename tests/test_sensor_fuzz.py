"""Thousands of bad neuron messages through real mosquitto into the edge worker.

The seeded corpus of tests/support/fuzz_payloads.py (every kind of malformed,
oversized, wrong-topic, unknown-device, duplicate, out-of-order and
clock-skewed message, interleaved with valid readings of both vendor
styles) is published over MQTT. The worker must not stop, must count every
bad message under the reason the corpus expects and put each one on the
dead-letter topic (a real Tansu broker) with that reason, and must take in
every valid reading.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.records import DeadLetter
from edge.dead_letters import KafkaDeadLetterSink, ensure_topic
from edge.worker import EdgeWorker
from streetwatch.brokers import RunningBroker
from streetwatch.config import parse_config
from tests.support.fakes import MemoryAlertSink
from tests.support.fuzz_payloads import FUZZ_DEVICES, FUZZ_SPECS, STATE_ONLY, FuzzCase, fuzz_cases
from tests.support.kafka_helpers import Topic
from tests.support.polling import until
from tests.support.wire import assert_valid

pytestmark = pytest.mark.integration


def device_type(name: str) -> dict[str, Any]:
    spec = FUZZ_SPECS[name]
    rule: dict[str, Any]
    if name in STATE_ONLY:
        rule = {"type": "state", "rule_id": "alarm", "category": f"{name}_alarm",
                "raise_on": ["alarm", "open"]}  # fmt: skip
    else:
        rule = {"type": "threshold", "rule_id": "high", "category": f"{name}_high",
                "enter": 1e6, "exit": 1e5}  # fmt: skip
    return {"name": name, "unit": spec.unit, "vendor": spec.vendor,
            "value_key": spec.value_key, "rules": [rule]}  # fmt: skip


def publish(port: int, cases: list[FuzzCase]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1)  # in order: duplicates and reordering are the point
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for case in cases:
            client.publish(case.topic, case.payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("separate_processes", [True, False], ids=["processes", "in-worker"])
async def test_fuzzed_messages_are_dead_lettered_with_their_reason_and_valid_ones_kept(
    tmp_path: Path, tansu: RunningBroker, mosquitto: RunningBroker, separate_processes: bool
) -> None:
    run = uuid.uuid4().hex[:8]
    cfg = parse_config({
        "edge": {"box_id": "ws-fuzz", "evidence_dir": str(tmp_path / "evidence")},
        "kafka": {"bootstrap": tansu.address, "sensor_dead_letter_topic": f"dead-{run}"},
        "mqtt": {"port": mosquitto.port, "client_id": f"fuzz-edge-{run}", "session_expiry_s": 0},
        "neuron": {"separate_processes": separate_processes},
        "device_types": [device_type(name) for name in FUZZ_SPECS],
        "devices": [
            {"device_id": d.device_id, "type": d.device_type, "town": d.town,
             "name": d.device_id}
            for d in FUZZ_DEVICES
        ],
    })  # fmt: skip
    cases = [c for c in fuzz_cases(seed=11, bad=4000, valid=1500, start=datetime.now(UTC),
                                   step_s=0.001) if c.deliverable]  # fmt: skip
    expected = Counter(c.expected.value for c in cases if c.expected is not None)
    valid = sum(c.expected is None for c in cases)
    assert sum(expected.values()) >= 3000 and len(expected) >= 8  # a real mix

    topic = cfg.kafka.sensor_dead_letter_topic
    await ensure_topic(cfg.kafka, topic)
    edge = EdgeWorker(cfg, MemoryAlertSink(), dead_letters=KafkaDeadLetterSink(cfg.kafka, topic))
    stop = asyncio.Event()
    async with Topic(cfg.kafka, topic) as dead:
        task = asyncio.create_task(edge.run(stop))
        await asyncio.wait_for(edge.ready.wait(), 30)
        await asyncio.to_thread(publish, mosquitto.port, cases)
        # every message handled; a bounded wait that does not fail (not `until`): the
        # counts are asserted on the final stats below
        for _ in range(600):
            if edge.stats.readings + sum(edge.stats.rejects.values()) == len(cases):
                break
            await asyncio.sleep(0.1)
        stop.set()
        stats = await task
        assert not task.cancelled()
        await until(
            lambda: len(dead.messages) >= sum(expected.values()),
            "a dead letter for every bad message",
            timeout=30,
            interval=0.1,
        )

    assert stats.readings == valid  # every valid reading was taken in
    assert stats.rejects == expected  # every bad one counted under its reason
    letters = [DeadLetter.model_validate_json(m) for m in dead.messages]
    assert Counter(d.reason for d in letters) == expected  # ... and dead-lettered
    assert len({d.letter_id for d in letters}) == len(letters)
    for raw in dead.messages[:200]:
        assert_valid("dead_letter", raw)
