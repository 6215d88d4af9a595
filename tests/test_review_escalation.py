"""A suppression lifts itself when its place escalates, on a live workbench.

A reviewer rejects a camera case with a mask (a real workbench on Tansu, the
case in a real SQLite store). Then, as the dispatch worker would, a case
event arrives on the dispatch topic: a sensor reports a problem at the same
place. The workbench lifts the mask and publishes the camera's suppressions
without it; the suppressions page says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from core.kafka import ensure_topics
from core.records import CameraSuppressions, CaseEvent, CaseEventType, GridRef, Place
from pipeline.cloudevents import case_event_bytes
from pipeline.store import open_store
from streetwatch.brokers import RunningBroker
from tests.support import review
from tests.support.cases import T0, first, make_case
from tests.support.kafka_helpers import Topic, fresh_kafka
from tests.support.polling import until

pytestmark = pytest.mark.integration

MASK = {
    "action": "reject",
    "reason": "wrong_object",
    "suppress": "mask",
    "polygon": "[[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]",
}


def latest(topic: Topic) -> CameraSuppressions | None:
    msgs = [CameraSuppressions.model_validate_json(m) for m in topic.messages]
    return max(msgs, key=lambda m: m.revision) if msgs else None


async def test_a_sensor_case_at_the_masked_place_lifts_the_mask(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    place = Place(place_id="s1", name="兰溪路", grids=GridRef(large="曹杨新村街道"))
    camera_case = make_case("s1").model_copy(update={"place": place})
    store_url = f"sqlite:///{tmp_path / 'cases.db'}"
    with open_store(store_url) as store:
        store.commit([first(camera_case)])
    config = review.write_config(tmp_path, kafka, store_url, tmp_path / "evidence")
    review.add_users(config)
    wb = review.start(config, tmp_path / "review.log")
    try:
        async with (
            review.Session(wb.url) as ann,
            Topic(kafka, kafka.suppression_topic) as suppressions,
        ):
            assert await ann.sign_in("patrol1") == 303
            status, body = await ann.post(f"/cases/{camera_case.case_id}/verdict", MASK)
            assert status == 303, body
            await until(lambda: latest(suppressions) is not None, "the mask published", 30)
            masked = latest(suppressions)
            assert masked is not None and len(masked.suppressions) == 1

            # a sensor at the same place raises a case (another category, another key)
            sensed = make_case("s1", "water_level_high", opening="w1").model_copy(
                update={"place": place, "sources": {"sensor:wl-1": T0}}
            )
            event = CaseEvent.of_case(sensed, CaseEventType.OPENED, "a-w1", T0)
            producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(
                    kafka.dispatch_topic,
                    case_event_bytes(event, "test"),
                    key=sensed.case_id.encode(),
                )
            finally:
                await producer.stop()

            def lifted() -> bool:
                now = latest(suppressions)
                return now is not None and now.revision > masked.revision and not now.suppressions

            await until(lifted, "the mask lifted and published", 30)
            status, page = await ann.get("/suppressions")
            assert status == 200 and f"escalated:{sensed.case_id}" in page
    finally:
        wb.stop()
