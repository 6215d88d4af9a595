"""The dispatch service when its case store fails, with real processes.

A `streetwatch dispatch` worker folds alerts into a real PostgreSQL case
store. For 30 s the store refuses it: its connection is terminated and the
database refuses new ones (``ALLOW_CONNECTIONS false``), while alerts keep
arriving and the dispatch system sends a status update. Every alert must end
up in its case exactly once, and the update must apply; the test adds a row
to the fault table (tests/support/faults.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from core.kafka import ensure_topics
from core.records import Alert, CaseStatus, Place, SourceKind, StatusUpdate
from pipeline.status_topic import publish_updates
from streetwatch.brokers import RunningBroker
from streetwatch.processes import Child
from tests.support.faults import FaultRow, record
from tests.support.kafka_helpers import Topic, fresh_kafka
from tests.support.polling import until
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
SITES = ["gate-a", "gate-b", "gate-c"]


def alert(n: int, site: str) -> Alert:
    observed = datetime.now(UTC).replace(microsecond=0) + timedelta(milliseconds=n)
    return Alert(
        alert_id=f"alert-{uuid.uuid4().hex[:20]}",
        category="illegal_stall",
        place=Place(place_id=site, name=site),
        source_kind=SourceKind.CAMERA,
        source_id=f"cam-{n}",  # a source of its own each: every alert is news, none held
        rule_id="stall",
        rule_text="a stall at the gate",
        first_seen=observed - timedelta(seconds=60),
        observed_at=observed,
        confidence=0.7,
    )


def dispatched(case_id: str) -> StatusUpdate:
    return StatusUpdate(
        update_id=f"u-{uuid.uuid4().hex[:12]}",
        case_id=case_id,
        status=CaseStatus.DISPATCHED,
        at=datetime.now(UTC),
        by="城管中队",
    )


def refuse(maintenance: str, db: str, allow: bool) -> None:
    """Let ``db`` take connections again, or refuse them and end the ones it has."""
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            )


async def test_the_case_store_refusing_for_30_s_loses_and_doubles_nothing(
    tansu: RunningBroker, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    maintenance = postgres_server.url
    db = f"fault_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    store_url = maintenance.rsplit("/", 1)[0] + f"/{db}"
    run = uuid.uuid4().hex[:8]
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    path = tmp_path / "dispatch.json"
    path.write_text(
        json.dumps(
            {
                "kafka": kafka.model_dump(),
                "dispatch": {
                    "app_id": f"centre-{run}",
                    "datadir": str(tmp_path / "faust"),
                    "session_timeout_s": 6.0,
                },
                "store": {"url": store_url},
            }
        )
    )
    worker = Child(
        "dispatch",
        [sys.executable, "-m", "streetwatch.cli", "dispatch", "--config", str(path)],
        log=tmp_path / "dispatch.log",
    )
    producer = AIOKafkaProducer(bootstrap_servers=tansu.address, acks="all")
    await producer.start()
    sent: list[Alert] = []

    async def send(n: int) -> None:
        for _ in range(n):
            a = alert(len(sent), SITES[len(sent) % len(SITES)])
            sent.append(a)
            await producer.send_and_wait(
                kafka.alerts_topic, a.to_json_bytes(), a.place.place_id.encode()
            )
            await asyncio.sleep(0.1)

    try:
        async with Topic(kafka, kafka.dispatch_topic) as dispatch:
            await send(15)
            await dispatch.wait_for_alerts(sent, timeout=90)
            await asyncio.to_thread(refuse, maintenance, db, False)
            first = next(iter(dispatch.cases().values()))
            # the dispatch system moves a case while the store refuses: it must not be lost
            await publish_updates(kafka, [dispatched(first.case_id)])
            await send(30)  # arrive while the store refuses
            await asyncio.sleep(max(0.0, OUTAGE_S - 3.0))
            await asyncio.to_thread(refuse, maintenance, db, True)
            back = time.monotonic()
            await send(15)
            await dispatch.wait_for_alerts(sent, timeout=120)
            recovery = time.monotonic() - back
            await until(
                lambda: dispatch.cases()[first.case_id].status is CaseStatus.DISPATCHED,
                "the status update sent during the outage applied",
                timeout=120,
            )
            await asyncio.sleep(3)  # room for a late fold
            cases = dispatch.cases()
    finally:
        await producer.stop()
        worker.stop()
        await asyncio.to_thread(refuse, maintenance, db, True)
    log = (tmp_path / "dispatch.log").read_text(errors="replace")
    assert "event=alerts_failed" in log, "the store never failed: the fault did not happen"
    assert "event=case_store_reconnected" in log
    assert sorted(c.place.place_id for c in cases.values()) == SITES, "one case per site"
    per_site = {s: sum(a.place.place_id == s for a in sent) for s in SITES}
    folded = {c.place.place_id: c.alert_count for c in cases.values()}
    assert folded == per_site, "each alert folded exactly once"
    record(
        FaultRow(
            f"case store (PostgreSQL) refusing the worker for {OUTAGE_S:.0f} s",
            alerts_raised=len(sent),
            cases_delivered=len(cases),
            lost=sum(max(0, per_site[s] - folded.get(s, 0)) for s in SITES),
            duplicated=sum(max(0, folded.get(s, 0) - per_site[s]) for s in SITES),
            recovery_s=recovery,
        )
    )
