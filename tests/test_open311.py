"""Open311 (GeoReport v2) client and bridge, against a real GeoReport server on
127.0.0.1 (tests/support/georeport_server.py) and, for the bridge, the real Tansu broker."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.kafka import create_topics
from core.records import (
    Case,
    CaseEvent,
    CaseEventType,
    CaseStatus,
    Evidence,
    EvidenceKind,
    Place,
    Route,
    StatusUpdate,
)
from pipeline.cloudevents import case_event_bytes
from pipeline.config import Open311Config
from pipeline.open311_bridge import (
    Open311Bridge,
    RequestState,
    RequestTable,
    run_bridge,
    summarize,
    table_path,
)
from pipeline.open311_client import (
    Open311Client,
    Open311Rejected,
    Open311Unavailable,
    UnmappedCategory,
)
from streetwatch.brokers import RunningBroker
from streetwatch.config import Config, ConfigError, parse_config
from tests.support.georeport_server import GeoReportServer
from tests.support.polling import until

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
CODES = {"illegal_parking": "PARK", "illegal_stall": "STALL", "bin_overflow": "NOPE"}


def make_case(n: int, category: str = "illegal_parking") -> Case:
    t = T0 + timedelta(minutes=n)
    place = Place(
        place_id=f"bay-{n}", name=f"东门 {n} 号", lat=31.2 + n / 1000, lon=121.4 + n / 1000
    )
    clip = Evidence(
        kind=EvidenceKind.CLIP,
        path=f"var/evidence/cam-1/clip-{n}.mp4",
        sha256="1" * 64,
        media_type="video/mp4",
        captured_at=t,
    )
    still = clip.model_copy(
        update={"kind": EvidenceKind.SNAPSHOT, "path": f"var/evidence/cam-1/snap {n}.jpg"}
    )
    return Case(
        case_id=Case.make_id(category, place.place_id, f"alert-{n}"),
        category=category,
        site_id=place.place_id,
        place=place,
        place_ids=(place.place_id,),
        filed_at=t,
        status_at=t,
        first_seen=t - timedelta(minutes=5),
        last_seen=t,
        alert_count=2,
        confidence=0.8,
        rule_texts=("车辆停留超过 5 分钟 vehicle still for 5 min",),
        sources={"camera:cam-1": t},
        evidence=(clip, still),
        route=Route(owner="交警", assisting=("城管中队",), urgency=2, matched="built-in"),
        version=1,
    )


def event(case: Case, kind: CaseEventType = CaseEventType.OPENED, version: int = 1) -> CaseEvent:
    case = case.model_copy(update={"version": version})
    return CaseEvent(
        event_id=CaseEvent.make_id(case.case_id, version),
        type=kind,
        case_id=case.case_id,
        version=version,
        cause_id=f"alert-{version}",
        emitted_at=case.filed_at,
        case=case,
    )


def o311(endpoint: str, **over: object) -> Open311Config:
    data: dict[str, object] = {
        "endpoint": endpoint,
        "api_key": "k-123",
        "jurisdiction_id": "town.example",
        "service_codes": CODES,
        "media_base_url": "https://media.example/evidence/",
        "retries": 4,
        "backoff_s": 0.02,
        "timeout_s": 2.0,
    }
    data.update(over)
    return Open311Config.model_validate(data)


@pytest.fixture
async def server() -> AsyncIterator[GeoReportServer]:
    srv = GeoReportServer(api_key="k-123")
    await srv.up()
    yield srv
    await srv.down()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(
    server: GeoReportServer, session: aiohttp.ClientSession, **over: object
) -> Open311Client:
    return Open311Client(o311(server.endpoint, **over), session, evidence_root="var/evidence")


# ---- client --------------------------------------------------------------------------


async def test_post_sends_the_spec_fields(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    case = make_case(1)
    rid = await client(server, session).post_request(case)
    assert list(server.requests) == [rid]
    req = server.requests[rid]
    f = req.form
    assert f["service_code"] == "PARK"
    assert (float(f["lat"]), float(f["long"])) == (case.place.lat, case.place.lon)
    assert f["address_string"] == "东门 1 号"
    assert f["media_url"] == "https://media.example/evidence/cam-1/snap%201.jpg"  # the still
    assert f["api_key"] == "k-123"
    assert f["jurisdiction_id"] == "town.example"
    assert f["attribute[case_id]"] == case.case_id
    assert req.idempotency_key == case.case_id
    d = f["description"]
    for part in ("illegal_parking", "车辆停留超过 5 分钟", "交警", "城管中队", "紧急", "东门 1 号"):
        assert part in d
    assert "2026-11-20 08:56:00+08:00" in d  # first seen, Shanghai time
    assert "2026-11-20 09:01:00+08:00" in d  # last seen


async def test_unmapped_category_is_an_error_and_sends_nothing(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(UnmappedCategory, match=r"no service_code for category 'smoke_alarm'"):
        await client(server, session).post_request(make_case(1, "smoke_alarm"))
    assert server.hits == []


async def test_503s_are_retried_then_succeed(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    server.fail_next(3, 503)
    c = client(server, session)
    rid = await c.post_request(make_case(1))
    assert list(server.requests) == [rid]
    assert [s for _, _, s in server.hits] == [503, 503, 503, 200]
    assert c.counts["retries"] == 3


async def test_429_is_retried_honouring_retry_after(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    server.fail_next(1, 429, retry_after="0.3")
    t = time.monotonic()
    await client(server, session).post_request(make_case(1))
    assert time.monotonic() - t >= 0.3
    assert [s for _, _, s in server.hits] == [429, 200]


async def test_gives_up_after_the_configured_retries(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    server.fail_next(10, 502)
    c = client(server, session, retries=2)
    with pytest.raises(Open311Unavailable, match=r"gave up after 3 attempts.*HTTP 502"):
        await c.post_request(make_case(1))
    assert len(server.hits) == 3
    assert server.requests == {}


async def test_4xx_is_not_retried(server: GeoReportServer, session: aiohttp.ClientSession) -> None:
    c = client(server, session)
    with pytest.raises(Open311Rejected, match="HTTP 404: 404 service_code NOPE was not found"):
        await c.post_request(make_case(1, "bin_overflow"))
    wrong_key = client(server, session, api_key="wrong")
    with pytest.raises(Open311Rejected, match="HTTP 403: 403 Invalid api_key") as exc:
        await wrong_key.post_request(make_case(2))
    assert exc.value.status == 403
    assert [s for _, _, s in server.hits] == [404, 403]
    assert c.counts["rejected"] == 1 and c.counts["retries"] == 0


async def test_server_down_then_up_files_once(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    await server.down()
    c = client(server, session, retries=8, backoff_s=0.05)
    task = asyncio.create_task(c.post_request(make_case(1)))
    await asyncio.sleep(0.5)
    assert not task.done() and server.hits == []  # refused connections: nothing reached it
    await server.up()
    rid = await asyncio.wait_for(task, 10)
    assert list(server.requests) == [rid]
    assert c.counts["retries"] >= 2


async def test_lost_answer_is_retried_with_the_same_idempotency_key(
    server: GeoReportServer, session: aiohttp.ClientSession
) -> None:
    server.drop_next(1)  # filed on the server, but the connection is cut before the answer
    case = make_case(1)
    rid = await client(server, session).post_request(case)
    assert list(server.requests) == [rid]
    assert server.replays == 1
    assert server.requests[rid].idempotency_key == case.case_id


async def test_token_is_resolved(session: aiohttp.ClientSession) -> None:
    srv = GeoReportServer(tokens=True, token_pending_polls=2)
    await srv.up()
    try:
        c = client(srv, session)
        sub = await c.submit(make_case(1))
        assert sub.service_request_id is None and sub.token is not None
        rid = await c.post_request(make_case(1))  # same key: same token, resolved after polls
        assert list(srv.requests) == [rid]
        assert srv.token_polls[sub.token] == 3
    finally:
        await srv.down()


async def test_statuses(server: GeoReportServer, session: aiohttp.ClientSession) -> None:
    c = client(server, session)
    a = await c.post_request(make_case(1))
    b = await c.post_request(make_case(2))
    server.close_request(b, "车辆已驶离 vehicle gone")
    got = await c.statuses([a, b, "9999"])
    assert set(got) == {a, b}
    assert (got[a].status, got[a].notes) == ("open", "")
    assert (got[b].status, got[b].notes) == ("closed", "车辆已驶离 vehicle gone")
    closed_at = got[b].updated_at
    assert closed_at is not None and closed_at == server.requests[b].updated
    assert got[b].agency == "城管中队"


# ---- bridge (Kafka) ---------------------------------------------------------------------


def bridge_config(tmp: Path, tansu: RunningBroker, endpoint: str, **open311: object) -> Config:
    run = uuid.uuid4().hex[:8]
    return parse_config(
        {
            "kafka": {
                "bootstrap": tansu.address,
                "dispatch_topic": f"dispatch-{run}",
                "status_topic": f"status-{run}",
                "partitions": 2,
            },
            "dispatch": {"datadir": str(tmp / "dispatch"), "session_timeout_s": 2.0},
            "edge": {"evidence_dir": "var/evidence"},
            "open311": {
                "endpoint": endpoint,
                "api_key": "k-123",
                "service_codes": CODES,
                "media_base_url": "https://media.example/evidence",
                "group_id": f"open311-{run}",
                "retries": 2,
                "backoff_s": 0.05,
                "poll_interval_s": 0.2,
                "timeout_s": 2.0,
                **open311,
            },
        }
    )


async def publish(cfg: Config, values: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(cfg.kafka.dispatch_topic, value, key=key.encode())
    finally:
        await producer.stop()


def opened(*cases: Case) -> list[tuple[str, bytes]]:
    return [(c.case_id, case_event_bytes(event(c), "test")) for c in cases]


async def stop_bridge(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 10)


async def committed(cfg: Config) -> dict[int, int | None]:
    c = AIOKafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap, group_id=cfg.open311.group_id)
    await c.start()
    try:
        tps = [TopicPartition(cfg.kafka.dispatch_topic, p) for p in range(cfg.kafka.partitions)]
        return {tp.partition: await c.committed(tp) for tp in tps}
    finally:
        await c.stop()


def by_case(server: GeoReportServer) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for req in server.requests.values():
        case_id = req.form["attribute[case_id]"]
        assert case_id not in out, f"case {case_id} filed twice"
        out[case_id] = req.form
    return out


@pytest.mark.integration
async def test_bridge_files_each_case_once_and_reports_closing(
    tmp_path: Path, tansu: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline")
    server = GeoReportServer(api_key="k-123")
    await server.up()
    cfg = bridge_config(tmp_path, tansu, server.endpoint)
    k = cfg.kafka
    await create_topics(k, [k.dispatch_topic, k.status_topic], k.partitions)
    good = [make_case(n) for n in range(1, 5)] + [make_case(5, "illegal_stall")]
    unmapped, refused = make_case(6, "smoke_alarm"), make_case(7, "bin_overflow")
    await publish(
        cfg,
        [
            *opened(*good[:3]),
            (good[0].case_id, case_event_bytes(event(good[0], CaseEventType.UPDATED, 2), "t")),
            *opened(good[1]),  # a re-delivery of an OPENED event
            ("junk", b"not a cloudevent"),
            *opened(unmapped, refused, good[3]),
        ],
    )
    server.fail_next(3, 503)
    stop = asyncio.Event()
    task = asyncio.create_task(run_bridge(cfg, stop))
    try:
        await until(lambda: len(server.requests) == 4, "4 filed requests", timeout=20)
        # the server goes away; cases published meanwhile are filed once it is back
        await server.down()
        await publish(cfg, opened(good[4]))
        await asyncio.sleep(1.0)
        assert len(server.requests) == 4
        await server.up()
        await until(lambda: len(server.requests) == 5, "the 5th request", timeout=20)

        forms = by_case(server)
        assert set(forms) == {c.case_id for c in good}
        for c in good:
            f = forms[c.case_id]
            assert f["service_code"] == CODES[c.category]
            assert (float(f["lat"]), float(f["long"])) == (c.place.lat, c.place.lon)
            n = c.place.place_id.removeprefix("bay-")
            assert f["media_url"] == f"https://media.example/evidence/cam-1/snap%20{n}.jpg"
        assert server.posts(200) == 5 and server.replays == 0

        # closing a request on the server becomes a StatusUpdate on the status topic
        rid = next(
            r for r, req in server.requests.items() if req.idempotency_key == good[2].case_id
        )
        server.close_request(rid, "已处置 towed away")
        update = await read_status(cfg, 15)
        assert update.case_id == good[2].case_id
        assert update.status is CaseStatus.HANDLED
        assert update.note == "已处置 towed away"
        assert update.update_id == f"open311:{rid}:closed"
        assert update.at == server.requests[rid].updated
    finally:
        await stop_bridge(task, stop)
        await server.down()

    table = RequestTable(table_path(cfg))
    try:
        states = {c.case_id: r.state for c in good if (r := table.get(c.case_id))}
        assert states == {
            c.case_id: RequestState.CLOSED if c is good[2] else RequestState.OPEN for c in good
        }
        u, r = table.get(unmapped.case_id), table.get(refused.case_id)
        assert u is not None and u.state is RequestState.FAILED and u.attempts == 0
        assert "no service_code for category 'smoke_alarm'" in u.reason
        assert r is not None and r.state is RequestState.FAILED and r.attempts == 1
        assert "HTTP 404" in r.reason and "NOPE" in r.reason
        listing = summarize(table.in_state(RequestState.FAILED)).splitlines()
        assert len(listing) == 2 and "smoke_alarm" in listing[0] and "NOPE" in listing[1]
    finally:
        table.close()
    assert "not filed in Open311 (kept as failed): no service_code" in caplog.text
    assert "is no case event" in caplog.text
    # everything was handled: the group's offsets are at the end of the topic (10 messages)
    offsets = await committed(cfg)
    assert sum(o or 0 for o in offsets.values()) == 10


async def read_status(cfg: Config, timeout: float) -> StatusUpdate:
    c = AIOKafkaConsumer(
        cfg.kafka.status_topic,
        bootstrap_servers=cfg.kafka.bootstrap,
        group_id=f"read-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await c.start()
    try:
        rec = await asyncio.wait_for(c.getone(), timeout)
        assert rec.value is not None
        return StatusUpdate.model_validate_json(rec.value)
    finally:
        await c.stop()


@pytest.mark.integration
async def test_bridge_never_commits_past_an_unfiled_case(
    tmp_path: Path, tansu: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    server = GeoReportServer(api_key="k-123")  # not up: the port is closed
    cfg = bridge_config(tmp_path, tansu, server.endpoint, retries=1)
    k = cfg.kafka
    await create_topics(k, [k.dispatch_topic, k.status_topic], k.partitions)
    cases = [make_case(n) for n in range(1, 4)]
    await publish(cfg, opened(*cases))
    stop = asyncio.Event()
    task = asyncio.create_task(run_bridge(cfg, stop))
    # it joins the group, tries, gives up, goes back to the case, tries again...
    await until(
        lambda: caplog.text.count("stays unfiled and uncommitted") >= 4, "retries", timeout=15
    )
    await stop_bridge(task, stop)
    assert server.requests == {}
    assert all(o in (None, 0) for o in (await committed(cfg)).values())
    # in flight: the first case of each partition the bridge got to (once one fails, the
    # rest of the batch is fetched again rather than tried, so it may reach only one)
    states = table_states(cfg)
    assert set(states) == {RequestState.POSTING} and states[RequestState.POSTING] in (1, 2)

    # back up: a new run files each case exactly once and commits them
    await server.up()
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(run_bridge(cfg, stop))
        await until(lambda: len(server.requests) == 3, "3 requests", timeout=20)
        await asyncio.sleep(0.5)  # time to (wrongly) file anything twice
        await stop_bridge(task, stop)
    finally:
        await server.down()
    assert set(by_case(server)) == {c.case_id for c in cases}
    assert sum(o or 0 for o in (await committed(cfg)).values()) == 3


@pytest.mark.integration
async def test_failed_case_is_filed_once_its_category_is_mapped(
    tmp_path: Path, tansu: RunningBroker
) -> None:
    server = GeoReportServer(service_codes=("PARK", "SMOKE"))
    await server.up()
    try:
        cfg = bridge_config(tmp_path, tansu, server.endpoint, api_key="")
        k = cfg.kafka
        await create_topics(k, [k.dispatch_topic, k.status_topic], k.partitions)
        case = make_case(1, "smoke_alarm")
        await publish(cfg, opened(case))
        stop = asyncio.Event()
        task = asyncio.create_task(run_bridge(cfg, stop))
        await until(
            lambda: table_state(cfg, case.case_id) is RequestState.FAILED, "failed", timeout=15
        )
        await stop_bridge(task, stop)
        assert server.requests == {}

        fixed = cfg.model_copy(
            update={
                "open311": cfg.open311.model_copy(
                    update={"service_codes": {**CODES, "smoke_alarm": "SMOKE"}}
                )
            }
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run_bridge(fixed, stop))
        await until(lambda: len(server.requests) == 1, "the request", timeout=15)
        await stop_bridge(task, stop)
        assert by_case(server)[case.case_id]["service_code"] == "SMOKE"
        assert table_state(cfg, case.case_id) is RequestState.OPEN
    finally:
        await server.down()


def table_states(cfg: Config) -> dict[RequestState, int]:
    table = RequestTable(table_path(cfg))
    try:
        return {RequestState(k): n for k, n in table.counts().items()}
    finally:
        table.close()


def table_state(cfg: Config, case_id: str) -> RequestState | None:
    table = RequestTable(table_path(cfg))
    try:
        row = table.get(case_id)
        return row.state if row else None
    finally:
        table.close()


def test_bridge_needs_an_endpoint() -> None:
    cfg = parse_config({})
    with pytest.raises(ConfigError, match=r"open311\.endpoint"):
        asyncio.run(run_bridge(cfg))


@pytest.mark.integration
async def test_bridge_token_resolution_and_closing(
    tmp_path: Path, tansu: RunningBroker, session: aiohttp.ClientSession
) -> None:
    server = GeoReportServer(tokens=True, token_pending_polls=1)
    await server.up()
    cfg = bridge_config(tmp_path, tansu, server.endpoint, api_key="")
    k = cfg.kafka
    await create_topics(k, [k.status_topic], k.partitions)
    producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap, acks="all")
    await producer.start()
    table = RequestTable(":memory:")
    try:
        bridge = Open311Bridge(cfg, table, Open311Client(cfg.open311, session), producer)
        case = make_case(1)
        await bridge.handle(event(case))
        row = table.get(case.case_id)
        assert row is not None and row.state is RequestState.TOKEN and row.token is not None
        assert row.service_request_id is None  # the first token look-up: not yet

        assert await bridge.poll_once() == []  # resolves the token
        row = table.get(case.case_id)
        assert row is not None and row.state is RequestState.OPEN
        rid = row.service_request_id
        assert rid is not None and list(server.requests) == [rid]

        await bridge.handle(event(case, CaseEventType.REOPENED, 3))  # known: not filed again
        await bridge.handle(event(case))  # a re-delivery
        assert server.posts(200) == 1 and len(server.requests) == 1

        server.close_request(rid, "done")
        (update,) = await bridge.poll_once()
        assert (update.case_id, update.status, update.note) == (
            case.case_id,
            CaseStatus.HANDLED,
            "done",
        )
        assert await bridge.poll_once() == []  # published once
        assert await read_status(cfg, 15) == update
        row = table.get(case.case_id)
        assert row is not None and row.state is RequestState.CLOSED
        assert bridge.counts["filed"] == 1 and bridge.counts["known"] == 2
    finally:
        table.close()
        await producer.stop()
        await server.down()
