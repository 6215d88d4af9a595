"""Bridge from the dispatch topic to a GeoReport v2 (Open311) dispatch system.

For dispatch systems that do not read Kafka. The bridge consumes the case
events on ``kafka.dispatch_topic`` (CloudEvents, consumer group
``open311.group_id``) and files every newly opened case as one service
request; it polls the requests' statuses and publishes a
:class:`StatusUpdate` on ``kafka.status_topic`` when one is closed.

Nothing is lost and nothing is filed twice:

- Every case it files is kept in a small SQLite table (``open311.db`` in
  ``dispatch.datadir``): ``posting`` before the POST, then ``open`` (with the
  service_request_id), ``token`` (the server files in batches: the id comes
  later), ``closed``, or ``failed`` with the reason. A case in the table is
  never POSTed again except from ``posting`` (an answer that never came),
  and then with the same ``Idempotency-Key: <case_id>``.
- The consumer commits an offset only once the case at it is in the table
  as filed or failed. When the server is unreachable or keeps answering
  5xx/429 past the client's retries, the consumer goes back to the unfiled
  case and tries again after a pause; it never commits past it.
- A case that cannot be filed as it is (its category has no service_code,
  the server answered 4xx) is logged with the reason, counted and kept as
  ``failed``: :meth:`Open311Bridge.retry_failed` (run at every start) tries
  them again, e.g. after the mapping was added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from core.config import ConfigError
from core.kafka import client_kwargs, create_topics, reliable_producer, start_producer
from core.records import Case, CaseEvent, CaseEventType, CaseStatus, StatusUpdate
from pipeline.cloudevents import EnvelopeError, parse_case_event
from pipeline.config import DispatchServiceConfig
from pipeline.open311_client import (
    Open311Client,
    Open311Error,
    Open311Refused,
    Open311Unavailable,
    RemoteStatus,
)

log = logging.getLogger(__name__)

TABLE_FILE = "open311.db"
BATCH = 100  # records per consumer fetch
FILE_EVENTS = frozenset({CaseEventType.OPENED, CaseEventType.REOPENED})


class RequestState(StrEnum):
    POSTING = "posting"  # about to be POSTed, or the answer never came
    TOKEN = "token"  # the server gave a token; the id comes later
    OPEN = "open"  # filed; the server's status is open
    CLOSED = "closed"  # closed on the server, StatusUpdate published
    FAILED = "failed"  # refused (unmapped category, HTTP 4xx): see reason


@dataclass(frozen=True)
class RequestRow:
    case_id: str
    category: str
    state: RequestState
    service_request_id: str | None
    token: str | None
    reason: str
    attempts: int
    status_notes: str
    case: Case
    created_at: datetime
    updated_at: datetime


_SCHEMA = """
CREATE TABLE IF NOT EXISTS open311_requests (
    case_id TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    state TEXT NOT NULL,
    service_request_id TEXT,
    token TEXT,
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    status_notes TEXT NOT NULL DEFAULT '',
    case_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS open311_requests_state ON open311_requests (state);
"""
_COLUMNS = (
    "case_id, category, state, service_request_id, token, reason, attempts, "
    "status_notes, case_body, created_at, updated_at"
)


class RequestTable:
    """case_id -> service request, in a SQLite file (or ``:memory:``)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get(self, case_id: str) -> RequestRow | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM open311_requests WHERE case_id = ?", (case_id,)
        ).fetchone()
        return _row(row) if row else None

    def in_state(self, *states: RequestState) -> list[RequestRow]:
        marks = ",".join("?" * len(states))
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM open311_requests WHERE state IN ({marks}) "
            "ORDER BY created_at, case_id",
            [s.value for s in states],
        ).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM open311_requests GROUP BY state")
        return {state: n for state, n in rows}

    def begin(self, case: Case) -> None:
        """Record that ``case`` is about to be POSTed (one more attempt)."""
        now = _now()
        self.db.execute(
            f"INSERT INTO open311_requests ({_COLUMNS}) "
            "VALUES (?, ?, 'posting', NULL, NULL, '', 1, '', ?, ?, ?) "
            "ON CONFLICT (case_id) DO UPDATE SET state = 'posting', reason = '', "
            "attempts = attempts + 1, case_body = excluded.case_body, updated_at = ?",
            (case.case_id, case.category, case.model_dump_json(), now, now, now),
        )

    def fail(self, case: Case, reason: str) -> None:
        now = _now()
        self.db.execute(
            f"INSERT INTO open311_requests ({_COLUMNS}) "
            "VALUES (?, ?, 'failed', NULL, NULL, ?, 0, '', ?, ?, ?) "
            "ON CONFLICT (case_id) DO UPDATE SET state = 'failed', reason = excluded.reason, "
            "updated_at = excluded.updated_at",
            (case.case_id, case.category, reason, case.model_dump_json(), now, now),
        )

    def filed(self, case_id: str, service_request_id: str | None, token: str | None) -> None:
        state = RequestState.OPEN if service_request_id is not None else RequestState.TOKEN
        self.db.execute(
            "UPDATE open311_requests SET state = ?, service_request_id = ?, token = ?, "
            "reason = '', updated_at = ? WHERE case_id = ?",
            (state.value, service_request_id, token, _now(), case_id),
        )

    def closed(self, case_id: str, status_notes: str) -> None:
        self.db.execute(
            "UPDATE open311_requests SET state = 'closed', status_notes = ?, updated_at = ? "
            "WHERE case_id = ?",
            (status_notes, _now(), case_id),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _row(r: tuple[object, ...]) -> RequestRow:
    (case_id, category, state, rid, token, reason, attempts, notes, body, created, updated) = r
    return RequestRow(
        case_id=str(case_id),
        category=str(category),
        state=RequestState(str(state)),
        service_request_id=None if rid is None else str(rid),
        token=None if token is None else str(token),
        reason=str(reason),
        attempts=int(str(attempts)),
        status_notes=str(notes),
        case=Case.model_validate_json(str(body)),
        created_at=datetime.fromisoformat(str(created)),
        updated_at=datetime.fromisoformat(str(updated)),
    )


class Open311Bridge:
    """Files cases from the dispatch topic and publishes closings; ``counts`` tallies."""

    def __init__(
        self,
        cfg: DispatchServiceConfig,
        table: RequestTable,
        client: Open311Client,
        producer: AIOKafkaProducer,
    ) -> None:
        self.cfg = cfg
        self.table = table
        self.client = client
        self.producer = producer
        self.counts: Counter[str] = Counter()

    # ---- filing ---------------------------------------------------------------

    async def handle(self, event: CaseEvent) -> None:
        """File the event's case if it is new to us; :class:`Open311Unavailable` if
        the server cannot be reached (the event must be handled again later)."""
        if event.type not in FILE_EVENTS:
            self.counts["ignored"] += 1
            return
        await self.file(event.case)

    async def file(self, case: Case) -> RequestRow | None:
        """POST ``case`` unless it is in the table already; the row afterwards."""
        row = self.table.get(case.case_id)
        if row is not None and row.state is not RequestState.POSTING:
            # failed ones wait for retry_failed (at the next start), the rest are filed
            self.counts["kept_failed" if row.state is RequestState.FAILED else "known"] += 1
            log.debug("case %s is %s in Open311 already", case.case_id, row.state)
            return row
        return await self._post(case)

    async def _post(self, case: Case) -> RequestRow | None:
        try:
            self.client.service_code(case)
        except Open311Refused as exc:
            return self._refused(case, exc)
        self.table.begin(case)
        try:
            sub = await self.client.submit(case)
        except Open311Refused as exc:
            return self._refused(case, exc)
        except Open311Unavailable:
            self.counts["unavailable"] += 1
            raise
        self.table.filed(case.case_id, sub.service_request_id, sub.token)
        self.counts["filed"] += 1
        if sub.service_request_id is not None:
            log.info("case %s filed as Open311 request %s", case.case_id, sub.service_request_id)
        else:
            log.info("case %s filed, Open311 token %s", case.case_id, sub.token)
            with contextlib.suppress(Open311Error):  # the poller resolves it later
                await self._resolve(case.case_id, sub.token)
        return self.table.get(case.case_id)

    def _refused(self, case: Case, exc: Open311Refused) -> RequestRow | None:
        self.table.fail(case, str(exc))
        self.counts["failed"] += 1
        self.counts[f"failed_{exc.counter}"] += 1
        log.error("case %s not filed in Open311 (kept as failed): %s", case.case_id, exc)
        return self.table.get(case.case_id)

    async def retry_failed(self) -> int:
        """POST every failed (and interrupted) case again; how many are filed now."""
        rows = self.table.in_state(RequestState.FAILED, RequestState.POSTING)
        filed = 0
        for row in rows:
            after = await self._post(row.case)
            if after is not None and after.state is not RequestState.FAILED:
                filed += 1
        if rows:
            log.info("open311: retried %d failed cases, %d filed now", len(rows), filed)
        return filed

    # ---- statuses ---------------------------------------------------------------

    async def _resolve(self, case_id: str, token: str | None) -> None:
        if token is None:
            return
        rid = await self.client.resolve_token(token)
        if rid is not None:
            self.table.filed(case_id, rid, token)
            log.info("case %s: Open311 token %s is request %s", case_id, token, rid)

    async def poll_once(self) -> list[StatusUpdate]:
        """Resolve tokens, read statuses, publish a StatusUpdate for each closed request."""
        for row in self.table.in_state(RequestState.TOKEN):
            await self._resolve(row.case_id, row.token)
        rows = {
            r.service_request_id: r
            for r in self.table.in_state(RequestState.OPEN)
            if r.service_request_id is not None
        }
        if not rows:
            return []
        remote = await self.client.statuses(list(rows))
        sent: list[StatusUpdate] = []
        for rid, st in remote.items():
            if st.status != "closed":
                continue
            update = self._update(rows[rid], rid, st)
            await self.producer.send_and_wait(
                self.cfg.kafka.status_topic,
                key=update.case_id.encode("utf-8"),
                value=update.to_json_bytes(),
            )
            self.table.closed(update.case_id, st.notes)
            self.counts["closed"] += 1
            sent.append(update)
            log.info(
                "Open311 request %s closed: case %s handled (%s)", rid, update.case_id, st.notes
            )
        return sent

    @staticmethod
    def _update(row: RequestRow, rid: str, st: RemoteStatus) -> StatusUpdate:
        return StatusUpdate(
            update_id=f"open311:{rid}:{st.status}",
            case_id=row.case_id,
            status=CaseStatus.HANDLED,
            at=st.updated_at or datetime.now(UTC),
            by=st.agency or "open311",
            note=st.notes,
        )

    async def poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except (Open311Error, KafkaError) as exc:
                log.warning("open311 status poll failed (%s); next in %.1fs", exc, self._poll_s)
            await asyncio.sleep(self._poll_s)

    @property
    def _poll_s(self) -> float:
        return self.cfg.open311.poll_interval_s

    # ---- consuming ----------------------------------------------------------------

    def consumer(self) -> AIOKafkaConsumer:
        session_ms = int(self.cfg.dispatch.session_timeout_s * 1000)
        return AIOKafkaConsumer(
            self.cfg.kafka.dispatch_topic,
            **client_kwargs(self.cfg.kafka),
            group_id=self.cfg.open311.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 6),
            max_poll_interval_ms=int(self._max_poll_s() * 1000),
        )

    def _max_poll_s(self) -> float:
        """Longer than one case's worst POST (all retries timing out), and 5 min at least."""
        o = self.cfg.open311
        waits = sum(self.client.delay(i) for i in range(o.retries))
        return max(300.0, 3 * (waits + (o.retries + 1) * o.timeout_s))

    async def consume(self, consumer: AIOKafkaConsumer) -> None:
        """Handle the dispatch topic until cancelled, committing only handled events."""
        budget = self._max_poll_s() / 3
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            started = time.monotonic()
            done: dict[TopicPartition, int] = {}
            rewind: dict[TopicPartition, int] = {}
            unavailable = False
            for tp, records in batches.items():
                for rec in records:
                    if rewind or time.monotonic() - started > budget:
                        rewind.setdefault(tp, rec.offset)  # not handled yet: fetch it again
                        break
                    try:
                        await self._consume_one(rec.value, tp, rec.offset)
                    except Open311Unavailable as exc:
                        log.error(
                            "open311 unreachable (%s): the case at %s[%d] offset %d stays "
                            "unfiled and uncommitted; trying again in %.1fs",
                            exc,
                            tp.topic,
                            tp.partition,
                            rec.offset,
                            self._pause_s,
                        )
                        rewind[tp] = rec.offset
                        unavailable = True
                        break
                    done[tp] = rec.offset + 1
            await self._commit(consumer, done)
            for tp, offset in rewind.items():
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                    consumer.seek(tp, offset)
            if unavailable:
                await asyncio.sleep(self._pause_s)

    @property
    def _pause_s(self) -> float:
        return self.client.delay(self.cfg.open311.retries)

    async def _consume_one(self, raw: bytes | None, tp: TopicPartition, offset: int) -> None:
        try:
            event = parse_case_event(raw or b"")
        except EnvelopeError as exc:
            self.counts["unreadable"] += 1
            log.error(
                "dispatch %s:%d offset %d is no case event: %s", tp.topic, tp.partition, offset, exc
            )
            return
        await self.handle(event)

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # a rebalance took the partition: the next owner sees these events again,
            # and the table keeps them from being filed twice
            log.warning("open311 commit failed (%s); events will be seen again", exc)

    async def run(self, stop: asyncio.Event, *, retry_failed: bool = True) -> None:
        """Retry failed cases, then consume and poll, until ``stop`` is set."""
        consumer = self.consumer()
        await consumer.start()

        async def main() -> None:
            if retry_failed:
                with contextlib.suppress(Open311Unavailable):  # the consumer waits for it
                    await self.retry_failed()
            await self.consume(consumer)

        tasks = [
            asyncio.create_task(main(), name="open311-consume"),
            asyncio.create_task(self.poll_forever(), name="open311-poll"),
            asyncio.create_task(stop.wait(), name="open311-stop"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.stop()
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r


def table_path(cfg: DispatchServiceConfig) -> Path:
    return Path(cfg.dispatch.datadir) / TABLE_FILE


def check_config(cfg: DispatchServiceConfig) -> None:
    """:class:`ConfigError` unless the bridge can run with ``cfg``."""
    o = cfg.open311
    problems: list[tuple[str, str]] = []
    if not o.endpoint:
        problems.append(("open311.endpoint", "set the GeoReport v2 base URL to run the bridge"))
    elif not o.endpoint.startswith(("http://", "https://")):
        problems.append(("open311.endpoint", f"{o.endpoint!r} is not an http(s) URL"))
    if problems:
        raise ConfigError("[open311]", problems)
    if not o.service_codes:
        log.warning("[open311] service_codes is empty: every case will be kept as failed")


async def run_bridge(
    cfg: DispatchServiceConfig, stop: asyncio.Event | None = None, *, retry_failed: bool = True
) -> None:
    """Run the Open311 bridge until ``stop`` is set (forever if None)."""
    check_config(cfg)
    stop = stop or asyncio.Event()
    table = RequestTable(table_path(cfg))
    k = cfg.kafka
    try:
        await create_topics(k, [k.dispatch_topic, k.status_topic], k.partitions)
        producer = reliable_producer(k)
        await start_producer(producer, k.bootstrap)
        try:
            async with aiohttp.ClientSession() as session:
                client = Open311Client(
                    cfg.open311,
                    session,
                    tz=ZoneInfo(cfg.sla.timezone),
                    evidence_root=cfg.open311.evidence_root,
                )
                bridge = Open311Bridge(cfg, table, client, producer)
                await bridge.run(stop, retry_failed=retry_failed)
                log.info(
                    "open311 bridge stopped: %s; table %s", dict(bridge.counts), table.counts()
                )
        finally:
            await producer.stop()
    finally:
        table.close()


def summarize(rows: Sequence[RequestRow]) -> str:
    """One line per row, for a person reading the table."""
    return "\n".join(
        f"{r.case_id}  {r.category:<20} {r.state:<8} "
        f"{r.service_request_id or r.token or '-':<12} tries {r.attempts}  {r.reason}"
        for r in rows
    )
