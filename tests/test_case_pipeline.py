"""The case pipeline on a real Tansu broker with `streetwatch dispatch` workers.

Alerts go onto the alerts topic as an edge box sends them (keyed by site);
status updates onto the status topic as the dispatch system sends them; the
case events are read back from the dispatch topic (CloudEvents).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from core.kafka import ensure_topics
from core.records import (
    Alert,
    CaseEventType,
    CaseStatus,
    Place,
    SourceKind,
    StatusUpdate,
)
from pipeline.case_engine import COALESCED
from pipeline.status_topic import publish_updates
from pipeline.store import open_store
from pipeline.store_sync import SyncStats, sync_store
from streetwatch.brokers import RunningBroker
from streetwatch.config import Config, parse_config
from tests.support.kafka_helpers import Topic, assert_same_cases, dispatch_worker, latest
from tests.support.polling import until
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0)
CORNER = [
    {"place_id": "corner-cam-east", "lat": 31.23040, "lon": 121.47370},
    {"place_id": "corner-cam-west", "lat": 31.23042, "lon": 121.47362},
    {"place_id": "corner-drain", "lat": 31.23038, "lon": 121.47366},
]


def pipeline_config(
    tmp: Path,
    tansu: RunningBroker,
    partitions: int = 4,
    dedup: dict[str, float] | None = None,
    **extra: object,
) -> Config:
    """A fresh worker setup; held changes come out after 2 s (10 by default) to keep
    the tests short."""
    run = uuid.uuid4().hex[:8]
    return parse_config(
        {
            "kafka": {
                "bootstrap": tansu.address,
                "alerts_topic": f"alerts-{run}",
                "dispatch_topic": f"dispatch-{run}",
                "status_topic": f"status-{run}",
                "dead_letter_topic": f"dead-{run}",
                "partitions": partitions,
            },
            "dispatch": {
                "app_id": f"dispatch-{run}",
                "datadir": str(tmp / f"faust-{run}"),
                "session_timeout_s": 6.0,
            },
            "store": {"url": f"sqlite:///{tmp / f'cases-{run}.db'}"},
            "places": CORNER,
            "dedup": {"coalesce_s": 2.0, **(dedup or {})},
            **extra,
        }
    )


def sighting(
    seconds: float, source: str, place: str, kind: SourceKind = SourceKind.CAMERA
) -> Alert:
    observed = T0 + timedelta(seconds=seconds)
    return Alert(
        alert_id=Alert.make_id(source, "r1", place, observed),
        category="water_level_high",
        place=Place(place_id=place, lat=None, lon=None),
        source_kind=kind,
        source_id=source,
        rule_id="r1",
        rule_text="water on the road",
        first_seen=observed,
        observed_at=observed,
        confidence=0.8 if kind is SourceKind.SENSOR else 0.6,
    )


async def send_alerts(cfg: Config, alerts: Sequence[Alert]) -> None:
    sites = cfg.site_map()
    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for a in alerts:
            key = sites.site_of(a.place).encode()
            await producer.send_and_wait(cfg.kafka.alerts_topic, a.to_json_bytes(), key=key)
    finally:
        await producer.stop()


async def test_one_corner_one_case_reopened_then_a_new_linked_case(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    cfg = pipeline_config(tmp_path, tansu)
    await ensure_topics(cfg.kafka)
    worker = dispatch_worker(cfg, tmp_path, "dispatch")
    try:
        async with Topic(cfg.kafka, cfg.kafka.dispatch_topic) as dispatch:
            corner = [
                sighting(0, "cam-east", "corner-cam-east"),
                sighting(3, "cam-west", "corner-cam-west"),
                sighting(5, "wl-0001", "corner-drain", SourceKind.SENSOR),
            ]
            await send_alerts(cfg, corner)
            await dispatch.wait_for({a.alert_id for a in corner})
            case = latest(dispatch.events())
            assert len(case) == 1, "two cameras and a sensor on one corner are one case"
            (first,) = case.values()
            assert set(first.case.sources) == {
                "camera:cam-east",
                "camera:cam-west",
                "sensor:wl-0001",
            }
            assert first.case.corroborated and first.version == 3

            # the dispatch system closes it; the water is back 5 minutes later
            case_id = first.case_id
            updates = [
                StatusUpdate(
                    update_id=f"{case_id}-{s}",
                    case_id=case_id,
                    status=s,
                    at=T0 + timedelta(seconds=t),
                    by="绿化市容所",
                )
                for s, t in ((CaseStatus.DISPATCHED, 60), (CaseStatus.CLOSED, 600))
            ]
            await publish_updates(cfg.kafka, updates)
            await dispatch.wait_for({u.update_id for u in updates})
            back = sighting(900, "cam-east", "corner-cam-east")
            await send_alerts(cfg, [back])
            await dispatch.wait_for({back.alert_id})
            reopened = next(e for e in dispatch.events() if e.cause_id == back.alert_id)
            assert reopened.type is CaseEventType.REOPENED and reopened.case_id == case_id

            # closed again, and back next week: a new case linked to the old one
            close = StatusUpdate(
                update_id=f"{case_id}-close-2",
                case_id=case_id,
                status=CaseStatus.SELF_HANDLED,
                at=T0 + timedelta(seconds=1200),
            )
            await publish_updates(cfg.kafka, [close])
            await dispatch.wait_for({close.update_id})
            next_week = sighting(8 * 86400, "wl-0001", "corner-drain", SourceKind.SENSOR)
            await send_alerts(cfg, [next_week])
            await dispatch.wait_for({next_week.alert_id})
            new = next(e for e in dispatch.events() if e.cause_id == next_week.alert_id)
            assert new.type is CaseEventType.OPENED and new.case_id != case_id
            assert new.case.linked_case_ids == (case_id,) and new.case.recurrence == 2

            # re-delivered alerts and updates change nothing
            before = len(dispatch.messages)
            await send_alerts(cfg, [*corner, back, next_week])
            await publish_updates(cfg.kafka, [*updates, close])
            marker = sighting(8 * 86400 + 60, "cam-west", "corner-cam-west")
            await send_alerts(cfg, [marker])
            await dispatch.wait_for({marker.alert_id})
            new_events = dispatch.events()[before:]
            assert [e.cause_id for e in new_events] == [marker.alert_id]

            # alerts and status updates that cannot apply go to the dead letters, with
            # the reason; the good alert in the same fetch still moves its case
            async with Topic(cfg.kafka, cfg.kafka.dead_letter_topic) as dead:
                unknown = StatusUpdate(
                    update_id="u-unknown", case_id="case-nope", status=CaseStatus.CLOSED, at=T0
                )
                await publish_updates(cfg.kafka, [unknown])
                after = sighting(8 * 86400 + 120, "cam-east", "corner-cam-east")
                producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap)
                await producer.start()
                await producer.send_and_wait(cfg.kafka.status_topic, b"{not json", key=b"x")
                await producer.send_and_wait(cfg.kafka.alerts_topic, b'{"alert": 1}', key=b"y")
                await producer.stop()
                await send_alerts(cfg, [after])
                await until(lambda: len(dead.messages) >= 3, "3 dead letters", timeout=60)
                assert sorted(dead.messages) == sorted(
                    [b"{not json", b'{"alert": 1}', unknown.to_json_bytes()]
                )
                await dispatch.wait_for({after.alert_id})
    finally:
        worker.stop()


async def test_a_replayed_alert_stream_gives_identical_cases(
    tansu: RunningBroker, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    cfg = pipeline_config(tmp_path, tansu)
    await ensure_topics(cfg.kafka)
    alerts = [
        sighting(t, source, place, kind)
        for t in range(0, 300, 30)
        for source, place, kind in (
            ("cam-east", "corner-cam-east", SourceKind.CAMERA),
            ("cam-west", "corner-cam-west", SourceKind.CAMERA),
            ("wl-0001", "corner-drain", SourceKind.SENSOR),
        )
    ]
    await send_alerts(cfg, alerts)
    runs = []
    for n in range(2):  # the second worker has its own store and dispatch topic
        run_cfg = cfg.model_copy(
            update={
                "kafka": cfg.kafka.model_copy(
                    update={"dispatch_topic": f"{cfg.kafka.dispatch_topic}-{n}"}
                ),
                "dispatch": cfg.dispatch.model_copy(
                    update={"app_id": f"{cfg.dispatch.app_id}-{n}"}
                ),
                "store": cfg.store.model_copy(
                    update={"url": f"sqlite:///{tmp_path / f'replay-{n}.db'}"}
                ),
            }
        )
        await ensure_topics(run_cfg.kafka)
        worker = dispatch_worker(run_cfg, tmp_path, f"replay-{n}")
        try:
            async with Topic(run_cfg.kafka, run_cfg.kafka.dispatch_topic) as dispatch:
                await dispatch.wait_for_counts(cases=1, alerts_each=len(alerts))
                runs.append(dispatch.events())
        finally:
            worker.stop()
    assert_same_cases(runs[0], runs[1])
    assert sum(e.cause_id != COALESCED for e in runs[0]) == 3  # opened, two more sources
    (final,) = latest(runs[0]).values()
    assert final.case.alert_count == len(alerts)

    # a PostgreSQL read model kept from the first run's dispatch topic holds what
    # the worker's SQLite store holds
    target = postgres_server.create_database(f"sync_{uuid.uuid4().hex[:8]}")
    sync_cfg = cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(
                update={"dispatch_topic": f"{cfg.kafka.dispatch_topic}-0"}
            )
        }
    )
    stop = asyncio.Event()
    stats = SyncStats()
    sync = asyncio.create_task(
        sync_store(sync_cfg, target, stop, f"sync-{uuid.uuid4().hex}", stats)
    )
    await until(lambda: stats.events >= len(runs[0]), "the read model to sync", timeout=60)
    stop.set()
    await sync
    with (
        open_store(f"sqlite:///{tmp_path / 'replay-0.db'}") as worker_store,
        open_store(target) as read_model,
    ):
        assert contents(read_model.dump()) == contents(worker_store.dump())


def contents(dump: dict[str, Any]) -> dict[str, Any]:
    """Cases, heads and event bodies; whether an event was published yet may differ."""
    events = {
        k: {f: v for f, v in e.items() if f != "published"} for k, e in dump["events"].items()
    }
    return {"cases": dump["cases"], "heads": dump["heads"], "events": events}


async def test_two_workers_split_the_partitions_and_survive_one_being_killed(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    places = [
        {"place_id": f"site-{i:02d}", "lat": 31.2 + i * 0.01, "lon": 121.4} for i in range(24)
    ]
    alerts = [
        sighting(r * 10, f"cam-{i % 5}", f"site-{i:02d}") for r in range(30) for i in range(24)
    ]
    expected = await run_workers(tmp_path, tansu, places, alerts, workers=1, kill_after=None)
    got = await run_workers(tmp_path, tansu, places, alerts, workers=2, kill_after=len(alerts) // 3)
    assert len(expected) == 24
    assert got == expected


async def run_workers(
    tmp: Path,
    tansu: RunningBroker,
    places: list[dict[str, object]],
    alerts: Sequence[Alert],
    workers: int,
    kill_after: int | None,
) -> dict[str, tuple[int, str]]:
    """Final (version, case JSON) per case id, after every alert was folded."""
    cfg = pipeline_config(tmp, tansu, partitions=4, places=places, dedup={"merge_within_m": 0.0})
    await ensure_topics(cfg.kafka)
    procs = [dispatch_worker(cfg, tmp, f"w{n}-{cfg.dispatch.app_id}") for n in range(workers)]
    try:
        async with Topic(cfg.kafka, cfg.kafka.dispatch_topic) as dispatch:
            if kill_after is None:
                await send_alerts(cfg, alerts)
            else:
                # both workers in the group, the partitions split between them
                logs = [tmp / f"w{n}-{cfg.dispatch.app_id}.log" for n in range(workers)]
                await until(
                    lambda: all(b"event=alerts_assigned" in log.read_bytes() for log in logs),
                    "partitions assigned to both workers",
                    timeout=60,
                )
                await asyncio.sleep(cfg.dispatch.session_timeout_s)  # the group settles
                await send_alerts(cfg, alerts[:kill_after])
                # both published cases: each owns some sites; then kill one mid-stream
                await until(
                    lambda: all(b"event=cases_published" in log.read_bytes() for log in logs),
                    "cases published by both workers",
                    timeout=60,
                )
                send = asyncio.create_task(send_alerts(cfg, alerts[kill_after:]))
                await asyncio.sleep(0.5)
                os.kill(procs[0].proc.pid, signal.SIGKILL)
                await send
            sites = len(places)
            await dispatch.wait_for_counts(sites, len(alerts) // sites, timeout=120)
            events = dispatch.events()
    finally:
        for p in procs:
            p.stop()
    by_id: dict[str, set[str]] = defaultdict(set)
    for e in events:
        by_id[e.event_id].add(e.case.model_dump_json())
    assert all(len(v) == 1 for v in by_id.values()), "one event id, two contents"
    cases = latest(events)
    for e in cases.values():
        assert e.version == e.case.alert_count, "the last event shows the last change"
    store = open_store(cfg.store.url)
    try:
        for case_id, e in cases.items():
            stored = store.get(case_id)
            assert stored is not None and stored == e.case
    finally:
        store.close()
    return {cid: (e.version, e.case.model_dump_json()) for cid, e in cases.items()}
