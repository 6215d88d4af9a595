"""The whole path on real parts: vtest.avi + MQTT readings -> Tansu -> faust -> dispatch topic.

Brokers (Tansu, mosquitto) are real processes started by fixtures; the
dispatch worker runs as `streetwatch dispatch` in a child process; the edge
worker runs in the test process with the real Kafka sink and MQTT client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaProducer
from paho.mqtt.enums import CallbackAPIVersion

from core.kafka import ensure_topics
from core.records import Alert, Case, CaseEvent, DeadLetter, EvidenceKind, Place
from edge.alert_sink import KafkaAlertSink, RecordingSink
from edge.dead_letters import KafkaDeadLetterSink, ensure_topic
from edge.worker import EdgeWorker
from pipeline.cloudevents import parse_case_event
from pipeline.dedup import shows
from streetwatch.brokers import RunningBroker
from streetwatch.config import Config, parse_config
from streetwatch.processes import Child
from tests.support.kafka_helpers import Topic, assert_same_cases, dispatch_worker
from tests.support.kafka_helpers import latest as newest_events
from tests.support.polling import until
from tests.support.wire import assert_valid

pytestmark = pytest.mark.integration

# Water level readings: hover above the alarm, fall, rise: three excursions.
LEVELS = [0.30, 0.61, 0.55, 0.62, 0.58, 0.30, 0.70, 0.52, 0.20, 0.80, 0.45]
MALFORMED = [b"{not json", b'{"value": "deep"}', b"\xff" * 10, b'{"value": 1}' + b" " * 70000]


def edge_config(tmp: Path, video: Path, tansu: RunningBroker, mosquitto: RunningBroker) -> Config:
    run = uuid.uuid4().hex[:8]
    return parse_config(
        {
            "edge": {"box_id": "ws-test", "evidence_dir": str(tmp / "evidence")},
            "kafka": {
                "bootstrap": tansu.address,
                "alerts_topic": f"alerts-{run}",
                "dispatch_topic": f"dispatch-{run}",
                "dead_letter_topic": f"dead-{run}",
                "sensor_dead_letter_topic": f"sensors-dead-{run}",
                "partitions": 2,
            },
            "mqtt": {"port": mosquitto.port, "client_id": f"edge-{run}"},
            "dispatch": {
                "app_id": f"dispatch-{run}",
                "datadir": str(tmp / "faust"),
                "session_timeout_s": 6.0,
            },
            "store": {"url": f"sqlite:///{tmp / 'cases.db'}"},
            "places": [
                {"place_id": "loading-bay", "name": "Loading bay"},
                {"place_id": "crossing", "name": "Crossing with walking people"},
                {"place_id": "underpass", "name": "Underpass"},
            ],
            "cameras": [
                {
                    "camera_id": "cam-vtest",
                    "url": str(video),
                    "analysis_fps": 2.0,
                    "zones": [
                        # the parked van and car at the top right, whole run
                        {
                            "zone_id": "bay",
                            "place": "loading-bay",
                            "polygon": [[600, 55], [768, 55], [768, 130], [600, 130]],
                        },
                        # the road where people walk all the time
                        {
                            "zone_id": "road",
                            "place": "crossing",
                            "polygon": [[0, 190], [768, 190], [768, 440], [0, 440]],
                        },
                    ],
                    "rules": [
                        {
                            "type": "illegal_parking",
                            "rule_id": "bay-parking",
                            "zone": "bay",
                            "dwell_s": 10.0,
                            "repeat_every_s": 10.0,
                        },
                        {
                            "type": "illegal_parking",
                            "rule_id": "road-parking",
                            "zone": "road",
                            "dwell_s": 10.0,
                            "repeat_every_s": 10.0,
                        },
                    ],
                }
            ],
            # the water-level type with a plain threshold (the built-in one
            # also asks for 2 of 3 readings above, which LEVELS is too short for)
            "device_types": [
                {
                    "name": "water_level",
                    "unit": "m",
                    "rules": [
                        {
                            "type": "threshold",
                            "rule_id": "level",
                            "category": "water_level_high",
                            "enter": 0.5,
                            "exit": 0.4,
                        }
                    ],
                }
            ],
            "devices": [
                {
                    "device_id": "wl-1",
                    "type": "water_level",
                    "town": "town-1",
                    "place_id": "underpass",
                }
            ],
        }
    )


def publish_readings(port: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    topic = "neuron/town-1/water_level/wl-1/up"
    t0 = time.time() - 60  # device clocks: a minute ago, one reading a second
    for i, level in enumerate(LEVELS):
        client.publish(
            topic, json.dumps({"value": level, "ts": t0 + i, "unit": "m"}), qos=1
        ).wait_for_publish(5)
        client.publish(topic, MALFORMED[i % len(MALFORMED)], qos=1).wait_for_publish(5)
    client.publish("neuron/town-1/water_level/ghost-9/up", b'{"value": 9}', qos=1).wait_for_publish(
        5
    )
    client.disconnect()
    client.loop_stop()


@pytest.fixture
async def chain(
    tmp_path: Path, vtest_video: Path, tansu: RunningBroker, mosquitto: RunningBroker
) -> AsyncIterator[tuple[Config, Child]]:
    cfg = edge_config(tmp_path, vtest_video, tansu, mosquitto)
    await ensure_topics(cfg.kafka)
    worker = dispatch_worker(cfg, tmp_path, "dispatch-1")
    yield cfg, worker
    worker.stop()


async def test_video_and_sensor_alerts_become_deduplicated_cases(
    chain: tuple[Config, Child], tmp_path: Path
) -> None:
    cfg, worker = chain
    sink = RecordingSink(KafkaAlertSink(cfg.kafka, cfg.site_map()))
    dead_topic = cfg.kafka.sensor_dead_letter_topic
    dead_sink = KafkaDeadLetterSink(cfg.kafka, dead_topic)
    edge = EdgeWorker(cfg, sink, pace="fast", dead_letters=dead_sink)
    stop = asyncio.Event()
    await ensure_topic(cfg.kafka, dead_topic)
    sent = 2 * len(LEVELS) + 1
    async with (
        Topic(cfg.kafka, cfg.kafka.dispatch_topic) as dispatch,
        Topic(cfg.kafka, cfg.kafka.alerts_topic) as alerts,
        Topic(cfg.kafka, dead_topic) as dead,
    ):
        run = asyncio.create_task(edge.run(stop))
        await asyncio.wait_for(edge.ready.wait(), 60)
        await asyncio.to_thread(publish_readings, cfg.mqtt.port)
        await asyncio.wait_for(edge.cameras_finished.wait(), 120)
        # every message has been handled; a bounded wait that does not fail (not `until`):
        # the counts are asserted on the final stats below
        for _ in range(200):
            if edge.stats.readings + sum(edge.stats.rejects.values()) == sent:
                break
            await asyncio.sleep(0.05)
        await dispatch.wait_for_alerts(sink.published.values())
        stop.set()
        stats = await run
        assert worker.running(), "dispatch worker died; see its log"

        events = dispatch.events()
        latest = {cid: e.case for cid, e in newest_events(events).items()}
        by_place = {c.place.place_id: c for c in latest.values()}

        # one parking case, updated (not duplicated) while the van stands
        parking = [c for c in latest.values() if c.category == "illegal_parking"]
        assert len(parking) == 1 and parking[0].place.place_id == "loading-bay"
        assert parking[0].alert_count > 1
        kinds = [ev.kind for ev in parking[0].evidence]
        assert kinds.count(EvidenceKind.CLIP) == 1 and EvidenceKind.SNAPSHOT in kinds
        assert kinds.count(EvidenceKind.FRAME) == 1  # the latest alert's undrawn frame
        for ev in parking[0].evidence:
            data = Path(ev.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == ev.sha256
            if ev.kind in (EvidenceKind.SNAPSHOT, EvidenceKind.FRAME):
                assert data[:2] == b"\xff\xd8"  # a JPEG
            else:
                assert data[4:8] == b"ftyp" and ev.media_type == "video/mp4"
        # one sensor case for three excursions above the threshold
        sensor = [c for c in latest.values() if c.category == "water_level_high"]
        assert len(sensor) == 1 and sensor[0].alert_count == 3
        assert [r.value for r in sensor[0].readings][-1] == 0.80
        # nothing for the road where people walk
        assert "crossing" not in by_place
        assert len(latest) == 2
        # bad input was counted, not fatal
        assert stats.readings == len(LEVELS)
        assert stats.rejects == {
            "not_json": 6,
            "bad_fields": 3,
            "oversized": 2,
            "unknown_device": 1,
        }
        # ... and each is a dead letter on Kafka, with its reason
        await until(lambda: len(dead.messages) >= 12, "12 dead letters", timeout=10, interval=0.1)
        letters = [DeadLetter.model_validate_json(m) for m in dead.messages]
        assert Counter(d.reason for d in letters) == stats.rejects
        for raw in dead.messages:
            assert_valid("dead_letter", raw)
        # the sensor case carries a chart of the readings that raised it
        charts = [e for e in sensor[0].evidence if e.kind is EvidenceKind.READINGS]
        assert charts and charts[0].media_type == "image/svg+xml"
        assert Path(charts[0].path).read_bytes().startswith(b"<svg")
        # every alert (raised ones and the two clears) is in a case; repeats of a
        # known source were held and published together, so fewer events than alerts
        assert Counter(Alert.model_validate_json(m).phase for m in alerts.messages) == {
            "raised": len(alerts.messages) - 2,
            "cleared": 2,
        }
        assert len(sink.published) == stats.alerts
        assert all(any(shows(c, a) for c in latest.values()) for a in sink.published.values())
        assert len({e.case_id for e in events}) == len(latest) < len(events) < stats.alerts
        # every message validates against the committed schemas
        assert len(alerts.messages) == len(sink.published)
        for raw in alerts.messages:
            assert_valid("alert", raw)
        for raw in dispatch.messages:
            data = json.loads(raw)["data"]
            assert_valid("case_event", json.dumps(data).encode())
            assert_valid("case", json.dumps(data["case"]).encode())

        # --- the same alerts again: no new cases, no new events
        first_events = list(dispatch.messages)
        places = {Alert.model_validate_json(m).place.place_id for m in alerts.messages}
        producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for raw in alerts.messages[: len(sink.published)]:
                a = Alert.model_validate_json(raw)
                await producer.send_and_wait(
                    cfg.kafka.alerts_topic, raw, key=a.place.place_id.encode()
                )
            # a marker per place, behind the duplicates on the same partition
            markers = []
            for place in sorted(places):
                marker = Alert.model_validate_json(alerts.messages[0]).model_copy(
                    update={
                        "category": "replay_marker",
                        "place": latest_place(latest, place),
                        "alert_id": f"marker-{place}",
                    }
                )
                markers.append(marker.alert_id)
                await producer.send_and_wait(
                    cfg.kafka.alerts_topic, marker.to_json_bytes(), key=place.encode()
                )
        finally:
            await producer.stop()
        await dispatch.wait_for(set(markers))
        new = dispatch.messages[len(first_events) :]
        assert sorted(parse_case_event(m).cause_id for m in new) == sorted(markers)

    # --- a fresh worker replaying the whole alerts topic makes identical cases
    replay_cfg = cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(
                update={"dispatch_topic": cfg.kafka.dispatch_topic + "-replay"}
            ),
            "dispatch": cfg.dispatch.model_copy(update={"app_id": cfg.dispatch.app_id + "-replay"}),
            "store": cfg.store.model_copy(update={"url": f"sqlite:///{tmp_path / 'replay.db'}"}),
        }
    )
    await ensure_topics(replay_cfg.kafka)
    replay_worker = dispatch_worker(replay_cfg, tmp_path, "dispatch-replay")
    try:
        async with Topic(replay_cfg.kafka, replay_cfg.kafka.dispatch_topic) as replayed:
            await replayed.wait_for_alerts(sink.published.values())
            await replayed.wait_for(set(markers))
            again = [e for e in replayed.events() if e.case.category != "replay_marker"]
            assert_same_cases(dispatch_events(first_events), again)
    finally:
        replay_worker.stop()


def dispatch_events(raw: list[bytes]) -> list[CaseEvent]:
    return [parse_case_event(m) for m in raw]


def latest_place(latest: dict[str, Case], place_id: str) -> Place:
    for case in latest.values():
        if case.place.place_id == place_id:
            return case.place
    raise KeyError(place_id)
