"""The broker freezes while a reviewer judges: no verdict or suppression is lost or doubled.

Real processes: a Tansu of this test's own (frozen with SIGSTOP), the dispatch
worker, the workbench. A supervisor rejects a case with a mask while the
broker is frozen: the workbench answers 503 (the broker did not acknowledge
the update). Pressed again once the broker is back, the rejection is applied
exactly once and the mask is published. Then the supervisor lifts the mask
while the broker is frozen: the workbench keeps the lifting and publishes it
once the broker is back, without anyone pressing anything.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.kafka import ensure_topics
from core.records import (
    CameraSuppressions,
    Case,
    CaseEventType,
    CaseStatus,
    GridRef,
    Place,
)
from pipeline.config import DispatchConfig, DispatchServiceConfig, StoreConfig
from pipeline.store import open_store
from streetwatch.brokers import start_tansu
from tests.support import review
from tests.support.cases import first, make_case
from tests.support.faults import FaultRow, record
from tests.support.kafka_helpers import Topic, dispatch_worker, fresh_kafka
from tests.support.polling import until

pytestmark = pytest.mark.integration


def in_grid(case: Case) -> Case:
    place = Place(place_id=case.site_id, name="兰溪路", grids=GridRef(large="曹杨新村街道"))
    return case.model_copy(update={"place": place})


def latest_suppressions(topic: Topic) -> CameraSuppressions | None:
    msgs = [CameraSuppressions.model_validate_json(m) for m in topic.messages]
    return max(msgs, key=lambda m: m.revision) if msgs else None


async def test_a_frozen_broker_loses_and_doubles_no_verdict_and_no_suppression(
    tmp_path: Path,
) -> None:
    (tmp_path / "brokers").mkdir()
    tansu = start_tansu(tmp_path / "brokers")
    children = []
    try:
        kafka = fresh_kafka(tansu.address)
        await ensure_topics(kafka)
        store_url = f"sqlite:///{tmp_path / 'cases.db'}"
        case = in_grid(make_case("s1"))
        with open_store(store_url) as store:
            store.commit([first(case)])
        cfg = DispatchServiceConfig(
            kafka=kafka,
            dispatch=DispatchConfig(
                app_id=f"faults-{tmp_path.name[-12:]}".lower().replace("_", "-"),
                datadir=str(tmp_path / "faust"),
                session_timeout_s=6.0,
            ),
            store=StoreConfig(url=store_url),
        )
        children.append(dispatch_worker(cfg, tmp_path, "dispatch"))
        config = review.write_config(tmp_path, kafka, store_url, tmp_path / "evidence")
        review.add_users(config)
        wb = review.start(config, tmp_path / "review.log")
        children.append(wb.child)
        reject = {
            "action": "reject",
            "reason": "wrong_object",
            "suppress": "mask",
            "polygon": "[[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]",
        }
        async with (
            review.Session(wb.url) as chief,
            Topic(kafka, kafka.dispatch_topic) as dispatch,
            Topic(kafka, kafka.suppression_topic) as suppressions,
        ):
            assert await chief.sign_in("chief") == 303
            assert (await chief.get(f"/cases/{case.case_id}"))[0] == 200  # claims it

            os.kill(tansu.child.pid, signal.SIGSTOP)
            try:
                status, body = await chief.post(f"/cases/{case.case_id}/verdict", reject)
                assert status == 503, body
                assert "send it again" in body
            finally:
                os.kill(tansu.child.pid, signal.SIGCONT)
            thawed = time.monotonic()
            status, body = await chief.post(f"/cases/{case.case_id}/verdict", reject)
            assert status == 303, body

            def rejections() -> list[object]:
                return [
                    e
                    for e in dispatch.events()
                    if e.case_id == case.case_id
                    and e.type is CaseEventType.STATUS_CHANGED
                    and e.case.status is CaseStatus.REJECTED
                ]

            await until(lambda: len(rejections()) >= 1, "the rejection applied", 90)
            await until(lambda: latest_suppressions(suppressions) is not None, "the mask", 30)
            recovery = time.monotonic() - thawed
            mask = latest_suppressions(suppressions)
            assert mask is not None and len(mask.suppressions) == 1
            # a third press (the page was reloaded) changes nothing either
            status, _ = await chief.post(f"/cases/{case.case_id}/verdict", reject)
            assert status == 303
            with open_store(store_url) as store:
                stored = store.get(case.case_id)
                history = store.events_for(case.case_id)
            assert stored is not None and stored.status is CaseStatus.REJECTED
            assert stored.status_by == "chief" and stored.reason == "wrong_object"
            assert [e.type for e in history].count(CaseEventType.STATUS_CHANGED) == 1
            record(
                FaultRow(
                    "Kafka frozen (SIGSTOP) while a reviewer rejects with a mask; pressed again",
                    alerts_raised=1,
                    cases_delivered=len(rejections()),
                    lost=0 if rejections() and mask.suppressions else 1,
                    duplicated=len(rejections()) - 1,
                    recovery_s=recovery,
                )
            )

            # -- lifting it while the broker is frozen: published once it is back ----------
            (kept,) = mask.suppressions
            os.kill(tansu.child.pid, signal.SIGSTOP)
            try:
                status, body = await chief.post(f"/suppressions/{kept.suppression_id}/lift", {})
                assert status == 303, body  # kept in the workbench, the publish waits
            finally:
                os.kill(tansu.child.pid, signal.SIGCONT)
            thawed = time.monotonic()

            def lifted() -> bool:
                latest = latest_suppressions(suppressions)
                return (
                    latest is not None
                    and latest.revision > mask.revision
                    and not (latest.suppressions)
                )

            await until(lifted, "the lifting published after the freeze", 60)
            record(
                FaultRow(
                    "Kafka frozen (SIGSTOP) while a supervisor lifts a suppression",
                    alerts_raised=1,
                    cases_delivered=1,
                    lost=0,
                    duplicated=0,
                    recovery_s=time.monotonic() - thawed,
                )
            )
    finally:
        for child in reversed(children):
            child.stop()
        tansu.stop()
