"""The case store interface, and what both backends share.

The store holds the state of every case (the dispatch worker keeps no other
state) and an outbox of case events waiting to be published:

- ``cases``: one row per case, the newest version (``body`` is the case JSON),
  with ``held_since`` set while that version waits to be published (a held
  change, see :class:`Change`);
- ``heads``: per case key (``category|site_id``) the newest case there and its
  version: the unit of optimistic concurrency;
- ``events``: every case event, with ``published`` set once it is on the
  dispatch stream.

:meth:`CaseStore.commit` decides which changes of a batch still hold with
:func:`plan_commit`, the same pure function in every backend, over the heads
and case versions it read inside its write transaction.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from core.records import Case, CaseEvent, CaseStatus

Head = tuple[str, int]
"""A case id and its version."""


class Change(NamedTuple):
    """A case event and the state it was computed from (see :meth:`CaseStore.commit`).

    A *held* change moves the case without an event in the outbox: the case
    row remembers since when its newest version waits (``held_since``), and
    :meth:`CaseStore.release` publishes that version later, unless a newer
    change that is not held publishes it first.
    """

    event: CaseEvent
    expected: Head | None
    held: bool = False


SCHEMA_VERSION = 2


class StoreError(Exception):
    """The store cannot be opened or used (bad URL, schema of another version)."""


class CaseStore(ABC):
    """The state of every case and the outbox of case events (SQLite or PostgreSQL)."""

    url: str

    @abstractmethod
    def head(self, case_key: str) -> Case | None:
        """The newest case at ``case_key`` (``category|site_id``), or None."""

    @abstractmethod
    def get(self, case_id: str) -> Case | None:
        """The case with this id at its newest version, or None."""

    @abstractmethod
    def has_cause(self, case_id: str, cause_id: str) -> bool:
        """Whether an event of this case was caused by ``cause_id`` (alert, update, ...)."""

    @abstractmethod
    def commit(self, changes: Sequence[Change]) -> list[CaseEvent]:
        """Write the changes that still hold, in one transaction; the events written.

        Each change is ``(event, expected)``: ``expected`` is the (case id,
        version) the event's case was computed from, or None when there was no
        case at its key yet. A change holds when

        - ``expected`` is None: the key has no head and the case id is new;
        - ``expected`` names the event's own case: that case is still at that
          version (whether or not it is the head of its key: a status update
          of an older case at the key holds too);
        - ``expected`` names another case (a new case replacing the head): the
          key's head is still ``expected`` and the event's case id is new.

        A change that holds writes the case row, the event row (unpublished;
        none for a held change) and, unless the case is an older one at its
        key, moves the head to (case id, version). Changes that do not hold
        are skipped, not an error. Later changes may build on earlier ones of
        the same batch. The result keeps the order of ``changes`` and includes
        the held changes' events (which are not in the outbox).
        """

    @abstractmethod
    def held(self, since: datetime, limit: int) -> list[Case]:
        """Cases whose newest version has waited unpublished since ``since`` or earlier."""

    @abstractmethod
    def release(self, events: Sequence[CaseEvent]) -> list[CaseEvent]:
        """Put events of held cases into the outbox; the ones written.

        Each event must show its case at the stored version: an event is
        written only while the case is still at that version and held, and the
        case is no longer held after it.
        """

    @abstractmethod
    def apply(self, event: CaseEvent) -> bool:
        """Project an event read from the dispatch stream; whether anything changed.

        The event row is inserted (published) if its id is new, or marked
        published; the case row is replaced if this version is newer; the head
        moves if the case is newer at its key (a greater ``(recurrence,
        case_id)``, or the same case at a greater version). Applying a stream
        twice, or in another order, leaves the same contents.
        """

    def apply_many(self, events: Iterable[CaseEvent]) -> int:
        """:meth:`apply` for several events; how many changed something."""
        return sum(self.apply(e) for e in events)

    @abstractmethod
    def unpublished(self, older_than: datetime, limit: int) -> list[CaseEvent]:
        """Events not yet marked published, emitted before ``older_than``, oldest first."""

    @abstractmethod
    def unpublished_count(self) -> int:
        """How many committed events wait in the outbox to be published."""

    @abstractmethod
    def mark_published(self, event_ids: Sequence[str]) -> None:
        """Mark these events published (ids the store does not have are ignored)."""

    @abstractmethod
    def due_sla(self, now: datetime, limit: int) -> list[Case]:
        """Open cases whose next SLA warning is due (``next_sla_at <= now``), earliest first."""

    @abstractmethod
    def cases_filed_between(self, since: datetime, until: datetime) -> list[Case]:
        """Cases with ``since <= filed_at < until``, by filed_at then case id."""

    @abstractmethod
    def all_cases(self) -> list[Case]:
        """Every case at its newest version, by filed_at then case id."""

    def cases_with_status(self, statuses: Iterable[CaseStatus]) -> list[Case]:
        """Cases whose status is one of ``statuses``, by filed_at then case id (the
        review workbench's queue reads the open ones)."""
        wanted = set(statuses)
        return [c for c in self.all_cases() if c.status in wanted]

    @abstractmethod
    def events_for(self, case_id: str) -> list[CaseEvent]:
        """The events of one case, by version."""

    @abstractmethod
    def dump(self) -> dict[str, Any]:
        """The whole contents in a canonical form (equal across backends)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqlReads(CaseStore):
    """The read methods, written once for both SQL dialects.

    A backend gives ``_rows`` and its dialect: the parameter placeholder, how
    to read a JSON body as text, how to test "not published", and how a time
    is passed as a parameter.
    """

    PH = "?"
    BODY = "body"
    NOT_PUBLISHED = "published = 0"

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _time(self, dt: datetime, what: str) -> Any: ...

    def _bodies(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """Run ``sql`` with ``{p}`` for placeholders and ``{body}`` for the JSON text."""
        rows = self._rows(sql.format(p=self.PH, body=self.BODY), params)
        return [r[0] for r in rows]

    def head(self, case_key: str) -> Case | None:
        rows = self._bodies(
            "SELECT c.{body} FROM heads AS h JOIN cases AS c ON c.case_id = h.case_id "
            "WHERE h.case_key = {p}",
            (case_key,),
        )
        return Case.model_validate_json(rows[0]) if rows else None

    def get(self, case_id: str) -> Case | None:
        rows = self._bodies("SELECT {body} FROM cases WHERE case_id = {p}", (case_id,))
        return Case.model_validate_json(rows[0]) if rows else None

    def has_cause(self, case_id: str, cause_id: str) -> bool:
        sql = "SELECT 1 FROM events WHERE case_id = {p} AND cause_id = {p} LIMIT 1"
        return bool(self._rows(sql.format(p=self.PH), (case_id, cause_id)))

    def unpublished(self, older_than: datetime, limit: int) -> list[CaseEvent]:
        rows = self._bodies(
            f"SELECT {{body}} FROM events WHERE {self.NOT_PUBLISHED} AND emitted_at < {{p}} "
            "ORDER BY emitted_at, case_id, version LIMIT {p}",
            (self._time(older_than, "older_than"), limit),
        )
        return [CaseEvent.model_validate_json(r) for r in rows]

    def unpublished_count(self) -> int:
        (row,) = self._rows(f"SELECT count(*) FROM events WHERE {self.NOT_PUBLISHED}")
        return int(row[0])

    def held(self, since: datetime, limit: int) -> list[Case]:
        return self._cases_due("held_since", since, "since", limit)

    def due_sla(self, now: datetime, limit: int) -> list[Case]:
        return self._cases_due("next_sla_at", now, "now", limit)

    def _cases_due(self, column: str, at: datetime, what: str, limit: int) -> list[Case]:
        """Cases whose time ``column`` (a fixed name, not input) is set and at or before
        ``at``, the earliest first."""
        rows = self._bodies(
            f"SELECT {{body}} FROM cases WHERE {column} IS NOT NULL AND {column} <= {{p}} "
            f"ORDER BY {column}, case_id LIMIT {{p}}",
            (self._time(at, what), limit),
        )
        return [Case.model_validate_json(r) for r in rows]

    def cases_filed_between(self, since: datetime, until: datetime) -> list[Case]:
        rows = self._bodies(
            "SELECT {body} FROM cases WHERE filed_at >= {p} AND filed_at < {p} "
            "ORDER BY filed_at, case_id",
            (self._time(since, "since"), self._time(until, "until")),
        )
        return [Case.model_validate_json(r) for r in rows]

    def all_cases(self) -> list[Case]:
        rows = self._bodies("SELECT {body} FROM cases ORDER BY filed_at, case_id")
        return [Case.model_validate_json(r) for r in rows]

    def cases_with_status(self, statuses: Iterable[CaseStatus]) -> list[Case]:
        wanted = sorted({s.value for s in statuses})
        if not wanted:
            return []
        marks = ", ".join("{p}" for _ in wanted)
        rows = self._bodies(
            f"SELECT {{body}} FROM cases WHERE status IN ({marks}) ORDER BY filed_at, case_id",
            wanted,
        )
        return [Case.model_validate_json(r) for r in rows]

    def events_for(self, case_id: str) -> list[CaseEvent]:
        rows = self._bodies(
            "SELECT {body} FROM events WHERE case_id = {p} ORDER BY version", (case_id,)
        )
        return [CaseEvent.model_validate_json(r) for r in rows]


# -- commit planning, shared by the backends ----------------------------------


@dataclass
class CommitPlan:
    """What a batch writes: the accepted events and the final rows they leave."""

    events: list[CaseEvent] = field(default_factory=list)  # held ones too
    outbox: list[CaseEvent] = field(default_factory=list)  # the events to publish
    heads: dict[str, Head] = field(default_factory=dict)  # key -> final head (changed keys)
    new_keys: set[str] = field(default_factory=set)  # keys that had no head row
    cases: dict[str, Case] = field(default_factory=dict)  # case id -> final case
    # case id -> since when its final version waits (None: it is in the outbox)
    held_since: dict[str, datetime | None] = field(default_factory=dict)


def check_change(change: Change) -> None:
    event, expected, _ = change
    if event.case.case_id != event.case_id or event.case.version != event.version:
        raise ValueError(
            f"event {event.event_id}: carries case {event.case.case_id} v{event.case.version}, "
            f"not {event.case_id} v{event.version}"
        )
    if expected is not None and expected[0] == event.case_id and event.version <= expected[1]:
        raise ValueError(
            f"event {event.event_id}: version {event.version} does not follow v{expected[1]}"
        )


def plan_commit(
    changes: Sequence[Change], heads: Mapping[str, Head], versions: Mapping[str, int]
) -> CommitPlan:
    """Which changes hold (see :meth:`CaseStore.commit`) given the stored state.

    ``heads`` are the stored heads of the batch's keys, ``versions`` the stored
    versions of its case ids (absent: none stored); both read inside the write
    transaction.
    """
    cur_heads = dict(heads)
    cur_versions = dict(versions)
    plan = CommitPlan()
    for event, expected, held in changes:
        case = event.case
        key = case.case_key
        head = cur_heads.get(key)
        stored = cur_versions.get(case.case_id)
        if expected is None:
            holds = head is None and stored is None
        elif expected[0] == case.case_id:
            holds = stored == expected[1]
        else:
            holds = head == expected and stored is None
        if not holds:
            continue
        if head is None or head[0] == case.case_id or stored is None:
            if key not in heads:
                plan.new_keys.add(key)
            cur_heads[key] = plan.heads[key] = (case.case_id, case.version)
        cur_versions[case.case_id] = case.version
        plan.cases[case.case_id] = case
        plan.events.append(event)
        if held:  # since the first held change that nothing published yet
            plan.held_since[case.case_id] = plan.held_since.get(case.case_id) or event.emitted_at
        else:
            plan.held_since[case.case_id] = None
            plan.outbox.append(event)
    return plan


def check_release(event: CaseEvent) -> None:
    check_change(Change(event, None))
    require_aware(event.emitted_at, "emitted_at")


# -- canonical dump -----------------------------------------------------------


def iso(dt: datetime | None) -> str | None:
    """An aware datetime as ISO-8601 in UTC (the dump's form)."""
    return None if dt is None else dt.astimezone(UTC).isoformat()


def require_aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {dt!r}")
    return dt


def canonical_dump(
    cases: Iterable[Sequence[Any]], events: Iterable[Sequence[Any]], heads: Iterable[Sequence[Any]]
) -> dict[str, Any]:
    """The dump from raw rows, with times already as aware datetimes.

    cases: (case_id, case_key, category, site_id, status, version, recurrence,
    filed_at, closed_at, next_sla_at, body_json); events: (event_id, case_id,
    version, type, cause_id, emitted_at, published, body_json); heads:
    (case_key, case_id, version).
    """
    return {
        "cases": {
            r[0]: {
                "case_key": r[1],
                "category": r[2],
                "site_id": r[3],
                "status": r[4],
                "version": int(r[5]),
                "recurrence": int(r[6]),
                "filed_at": iso(r[7]),
                "closed_at": iso(r[8]),
                "next_sla_at": iso(r[9]),
                "body": json.loads(r[10]),
            }
            for r in sorted(cases, key=lambda r: str(r[0]))
        },
        "events": {
            r[0]: {
                "case_id": r[1],
                "version": int(r[2]),
                "type": r[3],
                "cause_id": r[4],
                "emitted_at": iso(r[5]),
                "published": bool(r[6]),
                "body": json.loads(r[7]),
            }
            for r in sorted(events, key=lambda r: str(r[0]))
        },
        "heads": {r[0]: [r[1], int(r[2])] for r in sorted(heads, key=lambda r: str(r[0]))},
    }
