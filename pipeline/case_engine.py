"""The case engine: alerts, status updates and SLA time in; case events out.

The case store is the state. Each batch is folded against the newest case
at each key (the *head*) and committed in one transaction, every change
conditional on the head it was computed from (optimistic concurrency): when
another worker moved a head meanwhile, that key's alerts are folded again
from the fresh head. Only committed events are returned, for publishing;
they wait in the store's outbox until published, so a crash between commit
and publish loses nothing (:meth:`CaseEngine.unpublished`).

With ``coalesce_s`` > 0, an alert that only adds to what its case shows
(:func:`pipeline.dedup.noteworthy`) moves the case without an event: the
change is *held*, and published with the case's next noteworthy change or
by :meth:`CaseEngine.release_held` once it has waited ``coalesce_s``. The
case's version still grows with every change, so the event of a held
version, whenever it is published, has the same id and the same case.

Used by the faust dispatch worker (:mod:`pipeline.app`) and, with an
in-memory SQLite store, by ``streetwatch replay``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.records import (
    Alert,
    Case,
    CaseEvent,
    CaseEventType,
    SlaLevel,
    StatusUpdate,
)
from core.sites import SiteMap
from pipeline.config import DispatchServiceConfig
from pipeline.dedup import Folding, fold, noteworthy
from pipeline.lifecycle import TransitionError, apply_update
from pipeline.routing import Router
from pipeline.sla import SlaPolicy
from pipeline.store import CaseStore, Change
from pipeline.workdays import WorkCalendar

log = logging.getLogger("streetwatch.cases")

Clock = Callable[[], datetime]
MAX_ATTEMPTS = 5
HEAD_CACHE = 100_000
COALESCED = "coalesced"  # the cause of an event that publishes held changes
SLA_EVENT = {SlaLevel.YELLOW: CaseEventType.SLA_YELLOW, SlaLevel.RED: CaseEventType.SLA_RED}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Rejected:
    """A status update that could not apply, with the reason (for the dead letters)."""

    update: StatusUpdate
    reason: str
    detail: str


@dataclass
class EngineStats:
    alerts: int = 0
    duplicates: int = 0
    conflicts: int = 0
    updates: int = 0
    updates_applied: int = 0  # moved a case
    updates_repeated: int = 0  # re-delivered: applied before, changed nothing
    rejected: Counter[str] = field(default_factory=Counter)
    sla_events: int = 0
    held: int = 0
    released: int = 0


class CaseEngine:
    def __init__(
        self,
        store: CaseStore,
        sites: SiteMap,
        how: Folding,
        clock: Clock = utc_now,
        coalesce_s: float = 0.0,
    ) -> None:
        self.store = store
        self.sites = sites
        self.how = how
        self.clock = clock
        self.coalesce_s = coalesce_s
        self.stats = EngineStats()
        self._heads: dict[str, Case | None] = {}

    @classmethod
    def from_config(
        cls, cfg: DispatchServiceConfig, store: CaseStore, clock: Clock = utc_now
    ) -> CaseEngine:
        calendar = WorkCalendar(cfg.sla.extra_holidays, cfg.sla.extra_workdays, cfg.sla.timezone)
        how = Folding(
            router=Router(cfg.routing),
            sla=SlaPolicy(cfg.sla, calendar),
            reopen_within=timedelta(seconds=cfg.dedup.reopen_within_s),
        )
        return cls(store, cfg.site_map(), how, clock, cfg.dedup.coalesce_s)

    # -- alerts ---------------------------------------------------------------

    def key_of(self, alert: Alert) -> tuple[str, str]:
        site = self.sites.site_of(alert.place)
        return f"{alert.category}|{site}", site

    def _head(self, key: str) -> Case | None:
        if key not in self._heads:
            if len(self._heads) >= HEAD_CACHE:
                self._heads.clear()
            self._heads[key] = self.store.head(key)
        return self._heads[key]

    def forget(self) -> None:
        """Drop cached heads (after a rebalance another worker may own them)."""
        self._heads.clear()

    def on_alerts(self, alerts: Sequence[Alert]) -> list[CaseEvent]:
        """Fold a batch of alerts; the committed events, in order."""
        self.stats.alerts += len(alerts)
        pending = list(alerts)
        out: list[CaseEvent] = []
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            changes: list[Change] = []
            keys: list[str] = []
            # heads this batch moved, not yet committed: the cache only ever holds
            # committed heads, so a commit that raises leaves it as it was and the
            # batch, read again, folds the same way (never as duplicates of itself)
            staged: dict[str, Case] = {}
            for alert in pending:
                key, site = self.key_of(alert)
                head = staged[key] if key in staged else self._head(key)
                folded = fold(head, alert, site, self.how)
                if folded is None:
                    self.stats.duplicates += 1
                    continue
                case, kind = folded
                expected = None
                held = False
                if head is not None:
                    expected = (head.case_id, head.version)
                    held = (
                        self.coalesce_s > 0
                        and kind is CaseEventType.UPDATED
                        and not noteworthy(head, case)
                    )
                event = CaseEvent.of_case(case, kind, alert.alert_id, now)
                changes.append(Change(event, expected, held))
                keys.append(key)
                staged[key] = case
            committed = self.store.commit(changes)
            done = {e.event_id for e in committed}
            lost = {k for k, c in zip(keys, changes, strict=True) if c.event.event_id not in done}
            for key, case in staged.items():
                if key not in lost:
                    self._heads[key] = case
            for change in changes:
                if change.event.event_id in done:
                    if change.held:
                        self.stats.held += 1
                    else:
                        out.append(change.event)
            if len(committed) == len(changes):
                return out
            self.stats.conflicts += len(lost)
            for key in lost:
                self._heads.pop(key, None)
            # another worker moved these heads: fold their alerts again from the store
            pending = [a for a in pending if self.key_of(a)[0] in lost]
        raise RuntimeError(f"case heads kept moving under {len(pending)} alerts; giving up")

    # -- status updates -------------------------------------------------------

    def on_updates(self, updates: Sequence[StatusUpdate]) -> tuple[list[CaseEvent], list[Rejected]]:
        events: list[CaseEvent] = []
        rejected: list[Rejected] = []
        for update in updates:
            self.stats.updates += 1
            try:
                event = self._update(update)
            except TransitionError as exc:
                self.stats.rejected[exc.reason] += 1
                rejected.append(Rejected(update, exc.reason, str(exc)))
                log.warning(
                    "event=status_rejected update=%s reason=%s %s",
                    update.update_id,
                    exc.reason,
                    exc,
                )
                continue
            if event is not None:
                self.stats.updates_applied += 1
                events.append(event)
            else:
                self.stats.updates_repeated += 1
        return events, rejected

    def _update(self, update: StatusUpdate) -> CaseEvent | None:
        for _ in range(MAX_ATTEMPTS):
            case = self.store.get(update.case_id)
            if case is None:
                raise TransitionError("unknown_case", f"no case {update.case_id!r}")
            if self.store.has_cause(case.case_id, update.update_id):
                return None  # re-delivered
            moved = apply_update(case, update, self.how.sla)
            kind = CaseEventType.NOTED if update.status is None else CaseEventType.STATUS_CHANGED
            event = CaseEvent.of_case(moved, kind, update.update_id, self.clock())
            committed = self.store.commit([Change(event, (case.case_id, case.version))])
            self._heads.pop(case.case_key, None)
            if committed:
                return committed[0]
            self.stats.conflicts += 1
        raise TransitionError("busy", f"case {update.case_id} kept changing; try again")

    # -- SLA ------------------------------------------------------------------

    def tick(self, limit: int = 500) -> list[CaseEvent]:
        """Emit the SLA warnings due now, each once."""
        now = self.clock()
        out: list[CaseEvent] = []
        for case in self.store.due_sla(now, limit):
            current = case
            for stage, level in self.how.sla.due(case.sla, now):
                clocks = self.how.sla.warn(current.sla, stage, level)
                moved = current.model_copy(update={"sla": clocks, "version": current.version + 1})
                event = CaseEvent.of_case(
                    moved, SLA_EVENT[level], f"sla:{stage}:{level}", now, stage
                )
                committed = self.store.commit([Change(event, (current.case_id, current.version))])
                self._heads.pop(case.case_key, None)
                if not committed:
                    self.stats.conflicts += 1
                    break  # changed meanwhile: the next tick sees the fresh case
                out.append(committed[0])
                current = moved
        self.stats.sla_events += len(out)
        return out

    def release_held(self, limit: int = 1000) -> list[CaseEvent]:
        """Events for the cases whose newest change has been held ``coalesce_s`` or longer."""
        now = self.clock()
        cases = self.store.held(now - timedelta(seconds=self.coalesce_s), limit)
        events = [CaseEvent.of_case(c, CaseEventType.UPDATED, COALESCED, now) for c in cases]
        released = self.store.release(events)
        self.stats.released += len(released)
        return released

    def unpublished(self, older_than_s: float, limit: int = 1000) -> list[CaseEvent]:
        """Committed events nobody published (a worker died in between)."""
        return self.store.unpublished(self.clock() - timedelta(seconds=older_than_s), limit)
