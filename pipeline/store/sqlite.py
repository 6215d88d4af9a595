"""The case store in SQLite: one file, shareable by several worker processes.

WAL journal (readers never wait for the writer), a busy timeout, and every
write in ``BEGIN IMMEDIATE`` so two processes serialise on the write lock
instead of failing half-way. Times are ISO-8601 UTC text of one fixed format
(``2026-11-20T09:00:00.000000Z``), so text order is time order.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
BUSY_TIMEOUT_S = 30.0
CHUNK = 500  # host parameters per IN (...) list

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    case_key TEXT NOT NULL,
    category TEXT NOT NULL,
    site_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    recurrence INTEGER NOT NULL,
    filed_at TEXT NOT NULL,
    closed_at TEXT,
    next_sla_at TEXT,
    body TEXT NOT NULL,
    held_since TEXT
);
CREATE INDEX IF NOT EXISTS cases_next_sla ON cases (next_sla_at)
    WHERE next_sla_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_held ON cases (held_since) WHERE held_since IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_filed ON cases (filed_at);
CREATE TABLE IF NOT EXISTS heads (
    case_key TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    cause_id TEXT NOT NULL,
    emitted_at TEXT NOT NULL,
    body TEXT NOT NULL,
    published INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_cause ON events (case_id, cause_id);
CREATE INDEX IF NOT EXISTS events_unpublished ON events (emitted_at) WHERE published = 0;
"""

CASE_COLUMNS = (
    "case_id, case_key, category, site_id, status, version, recurrence, "
    "filed_at, closed_at, next_sla_at, body"
)
# held_since: kept from the first held version while the case stays held
UPSERT_CASE = f"""
INSERT INTO cases ({CASE_COLUMNS}, held_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (case_id) DO UPDATE SET
    case_key = excluded.case_key, category = excluded.category, site_id = excluded.site_id,
    status = excluded.status, version = excluded.version, recurrence = excluded.recurrence,
    filed_at = excluded.filed_at, closed_at = excluded.closed_at,
    next_sla_at = excluded.next_sla_at, body = excluded.body,
    held_since = CASE WHEN excluded.held_since IS NULL THEN NULL
                      ELSE coalesce(cases.held_since, excluded.held_since) END
"""
EVENT_COLUMNS = "event_id, case_id, version, type, cause_id, emitted_at, body, published"
INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
APPLY_EVENT = INSERT_EVENT + (
    " ON CONFLICT (event_id) DO UPDATE SET published = 1 WHERE events.published = 0"
)
APPLY_CASE = UPSERT_CASE + " WHERE excluded.version > cases.version"
APPLY_HEAD = """
INSERT INTO heads (case_key, case_id, version)
SELECT ?, c.case_id, c.version FROM cases AS c WHERE c.case_id = ?
ON CONFLICT (case_key) DO UPDATE SET case_id = excluded.case_id, version = excluded.version
WHERE (heads.case_id = excluded.case_id AND excluded.version > heads.version)
   OR (heads.case_id <> excluded.case_id
       AND (SELECT o.recurrence, o.case_id FROM cases AS o WHERE o.case_id = heads.case_id)
           < (?, excluded.case_id))
"""


def to_text(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return require_aware(dt, "time").astimezone(UTC).strftime(TIME_FORMAT)


def from_text(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def case_row(case: Case, held_since: datetime | None = None) -> tuple[Any, ...]:
    return (
        case.case_id,
        case.case_key,
        case.category,
        case.site_id,
        case.status.value,
        case.version,
        case.recurrence,
        to_text(case.filed_at),
        to_text(case.closed_at),
        to_text(case.next_sla_at()),
        case.model_dump_json(),
        to_text(held_since),
    )


def event_row(event: CaseEvent, published: bool) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.case_id,
        event.version,
        event.type.value,
        event.cause_id,
        to_text(event.emitted_at),
        event_json(event),
        int(published),
    )


def sqlite_target(url: str) -> str:
    """The file (or ``:memory:``) of a ``sqlite://`` URL.

    ``sqlite:///var/cases.db`` is the relative path ``var/cases.db``,
    ``sqlite:////srv/cases.db`` the absolute ``/srv/cases.db``;
    ``sqlite://:memory:`` (or ``sqlite:///:memory:``) a private in-memory store.
    """
    if url in ("sqlite://:memory:", "sqlite:///:memory:", "sqlite://"):
        return ":memory:"
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise StoreError(f"store url {url!r}: expected sqlite:///path or sqlite://:memory:")
    return url[len("sqlite:///") :]


class SqliteCaseStore(SqlReads):
    def __init__(self, url: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.url = url
        target = sqlite_target(url)
        self._lock = threading.RLock()
        try:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                target, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            # The store is the state: a commit must survive a power cut, not only a
            # crash (FULL costs about 15% of the engine's rate against NORMAL).
            self._db.execute("PRAGMA synchronous = FULL")
            self._set_up(target != ":memory:", time.monotonic() + busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open case store {target}: {exc}") from exc

    def _set_up(self, wal: bool, deadline: float) -> None:
        """WAL mode and the schema. Switching to WAL takes the file exclusively and
        does not wait for the busy timeout: when two workers start together on one
        file, the second tries again until the first is done."""
        while True:
            try:
                if wal:
                    self._db.execute("PRAGMA journal_mode = WAL")
                self._create_schema()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _create_schema(self) -> None:
        with self._write() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )
            (found,) = db.execute(
                "SELECT value FROM store_meta WHERE key = 'schema_version'"
            ).fetchone()
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"case store {self.url} has schema version {found}; this streetwatch "
                f"reads version {SCHEMA_VERSION}"
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _time(self, dt: datetime, what: str) -> Any:
        return to_text(require_aware(dt, what))

    def dump(self) -> dict[str, Any]:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for the three tables
            try:
                cases = self._db.execute(f"SELECT {CASE_COLUMNS} FROM cases").fetchall()
                events = self._db.execute(
                    "SELECT event_id, case_id, version, type, cause_id, emitted_at, published, "
                    "body FROM events"
                ).fetchall()
                heads = self._db.execute("SELECT case_key, case_id, version FROM heads").fetchall()
            finally:
                self._db.execute("COMMIT")
        return canonical_dump(
            ((*r[:7], from_text(r[7]), from_text(r[8]), from_text(r[9]), r[10]) for r in cases),
            ((*r[:5], from_text(r[5]), *r[6:]) for r in events),
            heads,
        )

    # -- writes -----------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> list[CaseEvent]:
        if not changes:
            return []
        for change in changes:
            check_change(change)
        keys = sorted({c.event.case.case_key for c in changes})
        ids = sorted({c.event.case_id for c in changes})
        with self._write() as db:
            heads: dict[str, Head] = {}
            for part in _chunks(keys):
                marks = ",".join("?" * len(part))
                for key, case_id, version in db.execute(
                    f"SELECT case_key, case_id, version FROM heads WHERE case_key IN ({marks})",
                    part,
                ):
                    heads[key] = (case_id, version)
            versions: dict[str, int] = {}
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                for case_id, version in db.execute(
                    f"SELECT case_id, version FROM cases WHERE case_id IN ({marks})", part
                ):
                    versions[case_id] = version
            plan = plan_commit(changes, heads, versions)
            db.executemany(
                "INSERT INTO heads (case_key, case_id, version) VALUES (?, ?, ?) "
                "ON CONFLICT (case_key) DO UPDATE SET "
                "case_id = excluded.case_id, version = excluded.version",
                [(k, cid, v) for k, (cid, v) in plan.heads.items()],
            )
            db.executemany(
                UPSERT_CASE,
                [case_row(c, plan.held_since[cid]) for cid, c in plan.cases.items()],
            )
            db.executemany(INSERT_EVENT, [event_row(e, False) for e in plan.outbox])
        return plan.events

    def release(self, events: Sequence[CaseEvent]) -> list[CaseEvent]:
        for event in events:
            check_release(event)
        out: list[CaseEvent] = []
        with self._write() as db:
            for event in events:
                freed = db.execute(
                    "UPDATE cases SET held_since = NULL "
                    "WHERE case_id = ? AND version = ? AND held_since IS NOT NULL",
                    (event.case_id, event.version),
                ).rowcount
                if freed:
                    db.execute(INSERT_EVENT, event_row(event, False))
                    out.append(event)
        return out

    def apply(self, event: CaseEvent) -> bool:
        return self.apply_many([event]) > 0

    def apply_many(self, events: Iterable[CaseEvent]) -> int:
        changed = 0
        with self._write() as db:
            for event in events:
                check_change(Change(event, None))
                case = event.case
                n = db.execute(APPLY_EVENT, event_row(event, True)).rowcount
                n += db.execute(APPLY_CASE, case_row(case)).rowcount
                n += db.execute(APPLY_HEAD, (case.case_key, case.case_id, case.recurrence)).rowcount
                changed += n > 0
        return changed

    def mark_published(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        # Without its own fsync: losing this mark to a power cut only publishes the
        # same events again (same ids), and the next commit's fsync covers it anyway.
        # Two workers on one file queue on the write lock, so every fsync held
        # under it costs both.
        with self._lock:
            self._db.execute("PRAGMA synchronous = NORMAL")
            try:
                with self._write() as db:
                    db.executemany(
                        "UPDATE events SET published = 1 WHERE event_id = ? AND published = 0",
                        [(i,) for i in event_ids],
                    )
            finally:
                self._db.execute("PRAGMA synchronous = FULL")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
