"""The case store in PostgreSQL (psycopg 3, synchronous).

Times are ``timestamptz``, case and event bodies ``jsonb``; identifiers use
the "C" collation so they sort as in SQLite and Python. A commit locks the
head rows of its keys (``SELECT ... FOR UPDATE``, in key order), reads the
versions of its cases, decides with the same :func:`plan_commit` as SQLite
and writes with one statement per table (``unnest`` of arrays). A head that
appeared meanwhile for a key that had none, or a deadlock, rolls the whole
batch back and it is decided again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from core.records import Case, CaseEvent
from pipeline.cloudevents import event_json
from pipeline.store.base import (
    SCHEMA_VERSION,
    Change,
    Head,
    SqlReads,
    StoreError,
    canonical_dump,
    check_change,
    check_release,
    plan_commit,
    require_aware,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 8

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS store_meta (
        key text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS cases (
        case_id text COLLATE "C" PRIMARY KEY,
        case_key text COLLATE "C" NOT NULL,
        category text COLLATE "C" NOT NULL,
        site_id text COLLATE "C" NOT NULL,
        status text NOT NULL,
        version integer NOT NULL,
        recurrence integer NOT NULL,
        filed_at timestamptz NOT NULL,
        closed_at timestamptz,
        next_sla_at timestamptz,
        body jsonb NOT NULL,
        held_since timestamptz
    )""",
    """CREATE INDEX IF NOT EXISTS cases_next_sla ON cases (next_sla_at)
        WHERE next_sla_at IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS cases_held ON cases (held_since)
        WHERE held_since IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS cases_filed ON cases (filed_at)",
    """CREATE TABLE IF NOT EXISTS heads (
        case_key text COLLATE "C" PRIMARY KEY,
        case_id text COLLATE "C" NOT NULL,
        version integer NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        event_id text COLLATE "C" PRIMARY KEY,
        case_id text COLLATE "C" NOT NULL,
        version integer NOT NULL,
        type text NOT NULL,
        cause_id text COLLATE "C" NOT NULL,
        emitted_at timestamptz NOT NULL,
        body jsonb NOT NULL,
        published boolean NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_cause ON events (case_id, cause_id)",
    """CREATE INDEX IF NOT EXISTS events_unpublished ON events (emitted_at)
        WHERE NOT published""",
]

CASE_COLUMNS = (
    "case_id, case_key, category, site_id, status, version, recurrence, "
    "filed_at, closed_at, next_sla_at, body"
)
CASE_UPDATE = """
    case_key = excluded.case_key, category = excluded.category, site_id = excluded.site_id,
    status = excluded.status, version = excluded.version, recurrence = excluded.recurrence,
    filed_at = excluded.filed_at, closed_at = excluded.closed_at,
    next_sla_at = excluded.next_sla_at, body = excluded.body,
    held_since = CASE WHEN excluded.held_since IS NULL THEN NULL
                      ELSE coalesce(cases.held_since, excluded.held_since) END
"""
COMMIT_NEW_HEADS = """
INSERT INTO heads (case_key, case_id, version)
SELECT * FROM unnest(%b::text[], %b::text[], %b::int[])
ON CONFLICT (case_key) DO NOTHING
RETURNING case_key
"""
COMMIT_MOVE_HEADS = """
UPDATE heads AS h SET case_id = u.case_id, version = u.version
FROM unnest(%b::text[], %b::text[], %b::int[]) AS u (case_key, case_id, version)
WHERE h.case_key = u.case_key
"""
COMMIT_CASES = f"""
INSERT INTO cases ({CASE_COLUMNS}, held_since)
SELECT u.case_id, u.case_key, u.category, u.site_id, u.status, u.version, u.recurrence,
       u.filed_at, u.closed_at, u.next_sla_at, u.body::jsonb, u.held_since
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::int[],
            %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::text[],
            %b::timestamptz[])
     AS u (case_id, case_key, category, site_id, status, version, recurrence,
           filed_at, closed_at, next_sla_at, body, held_since)
ON CONFLICT (case_id) DO UPDATE SET {CASE_UPDATE}
"""
COMMIT_EVENTS = """
INSERT INTO events (event_id, case_id, version, type, cause_id, emitted_at, body, published)
SELECT u.event_id, u.case_id, u.version, u.type, u.cause_id, u.emitted_at, u.body::jsonb, false
FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::timestamptz[],
            %b::text[]) AS u (event_id, case_id, version, type, cause_id, emitted_at, body)
"""
APPLY_EVENT = """
INSERT INTO events (event_id, case_id, version, type, cause_id, emitted_at, body, published)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, true)
ON CONFLICT (event_id) DO UPDATE SET published = true WHERE NOT events.published
"""
APPLY_CASE = f"""
INSERT INTO cases ({CASE_COLUMNS}, held_since)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (case_id) DO UPDATE SET {CASE_UPDATE}
WHERE excluded.version > cases.version
"""
APPLY_HEAD = """
INSERT INTO heads (case_key, case_id, version)
SELECT %s, c.case_id, c.version FROM cases AS c WHERE c.case_id = %s
ON CONFLICT (case_key) DO UPDATE SET case_id = excluded.case_id, version = excluded.version
WHERE (heads.case_id = excluded.case_id AND excluded.version > heads.version)
   OR (heads.case_id <> excluded.case_id
       AND ROW(%s::int, excluded.case_id)
           > (SELECT o.recurrence, o.case_id FROM cases AS o WHERE o.case_id = heads.case_id))
"""


class _HeadRace(Exception):
    """Another transaction created a head this batch expected to create."""


RELEASE_HELD = """
UPDATE cases AS c SET held_since = NULL
FROM unnest(%b::text[], %b::int[]) AS u (case_id, version)
WHERE c.case_id = u.case_id AND c.version = u.version AND c.held_since IS NOT NULL
RETURNING c.case_id
"""


def case_row(case: Case, held_since: datetime | None = None) -> tuple[Any, ...]:
    return (
        case.case_id,
        case.case_key,
        case.category,
        case.site_id,
        case.status.value,
        case.version,
        case.recurrence,
        case.filed_at,
        case.closed_at,
        case.next_sla_at(),
        case.model_dump_json(),
        held_since,
    )


def event_row(event: CaseEvent) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.case_id,
        event.version,
        event.type.value,
        event.cause_id,
        event.emitted_at,
        event_json(event),
    )


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (for ``unnest``)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class PostgresCaseStore(SqlReads):
    PH = "%s"
    BODY = "body::text"
    NOT_PUBLISHED = "NOT published"

    def __init__(self, url: str, connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.reconnects = 0
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._create_schema()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s))
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the case store: {exc}") from exc

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, made again if the last one broke (the server restarted, or
        the network went): the caller's work fails once, its retry finds a new one.
        Call it holding ``_lock``."""
        if self._conn.broken or self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = self._connect()
            self.reconnects += 1
            log.warning("event=case_store_reconnected reconnects=%d", self.reconnects)
        return self._conn

    def _create_schema(self) -> None:
        with self._lock, self._live().transaction():
            # two workers starting together must not both create the tables
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('streetwatch.case_store'))")
            for statement in SCHEMA:
                self._conn.execute(statement)
            self._conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )
            row = self._conn.execute(
                "SELECT value FROM store_meta WHERE key = 'schema_version'"
            ).fetchone()
        found = row[0] if row else None
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"case store has schema version {found}; this streetwatch reads "
                f"version {SCHEMA_VERSION}"
            )

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._live().execute(sql, params).fetchall()

    def _transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` in a transaction; again from the start after a deadlock or race."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._lock:
                    conn = self._live()
                    with conn.transaction():
                        return work(conn)
            except (errors.DeadlockDetected, errors.SerializationFailure, _HeadRace):
                if attempt == ATTEMPTS:
                    raise
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    def _time(self, dt: datetime, what: str) -> Any:
        return require_aware(dt, what)

    def dump(self) -> dict[str, Any]:
        with self._lock, self._live().transaction():
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cases = self._conn.execute(
                "SELECT case_id, case_key, category, site_id, status, version, recurrence, "
                "filed_at, closed_at, next_sla_at, body::text FROM cases"
            ).fetchall()
            events = self._conn.execute(
                "SELECT event_id, case_id, version, type, cause_id, emitted_at, published, "
                "body::text FROM events"
            ).fetchall()
            heads = self._conn.execute("SELECT case_key, case_id, version FROM heads").fetchall()
        return canonical_dump(cases, events, heads)

    # -- writes -----------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> list[CaseEvent]:
        if not changes:
            return []
        for change in changes:
            check_change(change)
            require_aware(change[0].emitted_at, "emitted_at")
        keys = sorted({c.event.case.case_key for c in changes})
        ids = sorted({c.event.case_id for c in changes})

        def work(conn: psycopg.Connection[Any]) -> list[CaseEvent]:
            with conn.pipeline():  # both reads in one round trip
                locked = conn.execute(
                    "SELECT case_key, case_id, version FROM heads WHERE case_key = ANY(%s) "
                    "ORDER BY case_key FOR UPDATE",
                    (keys,),
                )
                stored = conn.execute(
                    "SELECT case_id, version FROM cases WHERE case_id = ANY(%s)", (ids,)
                )
            heads: dict[str, Head] = {k: (cid, v) for k, cid, v in locked.fetchall()}
            versions: dict[str, int] = dict(stored.fetchall())
            plan = plan_commit(changes, heads, versions)
            if not plan.cases:
                return []
            new = [(k, *plan.heads[k]) for k in sorted(plan.new_keys)]
            moved = [(k, *h) for k, h in sorted(plan.heads.items()) if k not in plan.new_keys]
            with conn.pipeline():  # and the writes in another
                made = conn.execute(COMMIT_NEW_HEADS, columns(new, 3)) if new else None
                if moved:
                    conn.execute(COMMIT_MOVE_HEADS, columns(moved, 3))
                rows = [case_row(c, plan.held_since[cid]) for cid, c in plan.cases.items()]
                conn.execute(COMMIT_CASES, columns(rows, 12))
                conn.execute(COMMIT_EVENTS, columns([event_row(e) for e in plan.outbox], 7))
            if made is not None and len(made.fetchall()) != len(new):
                raise _HeadRace  # another worker created one of these heads: decide again
            return plan.events

        return self._transaction(work)

    def release(self, events: Sequence[CaseEvent]) -> list[CaseEvent]:
        for event in events:
            check_release(event)
        if not events:
            return []

        def work(conn: psycopg.Connection[Any]) -> list[CaseEvent]:
            freed = conn.execute(
                RELEASE_HELD,
                ([e.case_id for e in events], [e.version for e in events]),
            ).fetchall()
            ids = {r[0] for r in freed}
            out = [e for e in events if e.case_id in ids]
            if out:
                conn.execute(COMMIT_EVENTS, columns([event_row(e) for e in out], 7))
            return out

        return self._transaction(work)

    def apply(self, event: CaseEvent) -> bool:
        return self.apply_many([event]) > 0

    def apply_many(self, events: Iterable[CaseEvent]) -> int:
        batch = list(events)
        for event in batch:
            check_change(Change(event, None))

        def work(conn: psycopg.Connection[Any]) -> int:
            # pipelined: one round trip for the batch, row counts read at the end
            sent: list[tuple[psycopg.Cursor[Any], ...]] = []
            with conn.pipeline():
                for event in batch:
                    case = event.case
                    sent.append(
                        (
                            conn.execute(APPLY_EVENT, event_row(event)),
                            conn.execute(APPLY_CASE, case_row(case)),
                            conn.execute(
                                APPLY_HEAD, (case.case_key, case.case_id, case.recurrence)
                            ),
                        )
                    )
            return sum(any(cur.rowcount > 0 for cur in cursors) for cursors in sent)

        return self._transaction(work)

    def mark_published(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        self._transaction(
            lambda conn: conn.execute(
                "UPDATE events SET published = true WHERE event_id = ANY(%s) AND NOT published",
                (list(event_ids),),
            )
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
