"""The queue's read model: one small card per open case, kept in memory.

Loaded from the case store at start, then kept current from the dispatch
topic (every case event carries the whole case at its version, so a card is
replaced only by a newer version; a re-delivered or older event changes
nothing). Filtering and sorting 10,000 cards in memory takes milliseconds;
the case page itself always reads the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.records import Case, CaseStatus, EvidenceKind

LEVEL_RANK = {"red": 0, "yellow": 1, "green": 2}


def level_at(yellow_at: datetime | None, due_at: datetime | None, now: datetime) -> str:
    """The colour of an SLA clock at ``now``: red past its deadline, yellow past its
    warning, else green."""
    if due_at is not None and now >= due_at:
        return "red"
    if yellow_at is not None and now >= yellow_at:
        return "yellow"
    return "green"


def cameras_of(case: Case) -> list[str]:
    """The cameras that reported ``case`` (its ``camera:<id>`` sources), sorted."""
    return sorted(key.split(":", 1)[1] for key in case.sources if key.startswith("camera:"))


@dataclass(frozen=True)
class Card:
    """What the queue shows and sorts by, taken from one version of a case."""

    case_id: str
    version: int
    category: str
    status: CaseStatus
    place_id: str
    place_name: str
    grids: tuple[str, ...]  # large .. micro, those set
    urgency: int  # 1 most urgent .. 4; 4 when unrouted
    owner: str
    filed_at: datetime
    last_seen: datetime
    source_kinds: frozenset[str]
    cameras: frozenset[str]
    stage: str | None  # the SLA stage running now
    yellow_at: datetime | None
    due_at: datetime | None
    confidence: float
    alert_count: int
    thumbnail: str | None  # sha256 of the latest snapshot

    @classmethod
    def of(cls, case: Case) -> Card:
        g = case.place.grids
        running = next((c for c in case.sla if c.met_at is None), None)
        kinds = {key.split(":", 1)[0] for key in case.sources}
        snapshots = [e for e in case.evidence if e.kind is EvidenceKind.SNAPSHOT]
        return cls(
            case_id=case.case_id,
            version=case.version,
            category=case.category,
            status=case.status,
            place_id=case.place.place_id,
            place_name=case.place.name or case.place.place_id,
            grids=tuple(x for x in (g.large, g.medium, g.small, g.micro) if x),
            urgency=case.route.urgency if case.route else 4,
            owner=case.route.owner if case.route else "",
            filed_at=case.filed_at,
            last_seen=case.last_seen,
            source_kinds=frozenset(kinds),
            cameras=frozenset(cameras_of(case)),
            stage=running.stage.value if running else None,
            yellow_at=running.yellow_at if running else None,
            due_at=running.due_at if running else None,
            confidence=case.confidence,
            alert_count=case.alert_count,
            thumbnail=snapshots[-1].sha256 if snapshots else None,
        )

    def level(self, now: datetime) -> str:
        """The colour of the running SLA stage now: green, yellow or red."""
        return level_at(self.yellow_at, self.due_at, now)

    def sort_key(self, now: datetime) -> tuple[int, int, datetime, str]:
        """Red first, then yellow, then by urgency, then the oldest."""
        return (LEVEL_RANK[self.level(now)], self.urgency, self.filed_at, self.case_id)


@dataclass(frozen=True)
class Filters:
    """What a reviewer narrowed the queue to; empty fields match everything."""

    grid: str = ""
    category: str = ""
    status: str = ""
    urgency: int | None = None
    source_kind: str = ""
    camera: str = ""

    def match(self, card: Card) -> bool:
        return (
            (not self.grid or self.grid in card.grids)
            and (not self.category or card.category == self.category)
            and (not self.status or card.status.value == self.status)
            and (self.urgency is None or card.urgency == self.urgency)
            and (not self.source_kind or self.source_kind in card.source_kinds)
            and (not self.camera or self.camera in card.cameras)
        )


@dataclass
class Queue:
    """The open cases, as cards; updated from case events, newest version wins."""

    cards: dict[str, Card] = field(default_factory=dict)
    versions: dict[str, int] = field(
        default_factory=dict
    )  # closed ones too, so late events stay out

    def load(self, cases: Iterable[Case]) -> None:
        """Take the open cases as the store has them now: a card whose case is not
        among them any more (it ended while the feed was away) goes."""
        fresh = {c.case_id: c for c in cases if not c.status.terminal}
        for case_id in list(self.cards):
            if case_id not in fresh:
                del self.cards[case_id]
        for case in fresh.values():
            self.apply(case)

    def apply(self, case: Case) -> bool:
        """Take ``case`` if it is newer than what is held; whether it changed anything."""
        if self.versions.get(case.case_id, 0) >= case.version:
            return False
        self.versions[case.case_id] = case.version
        if case.status.terminal:
            self.cards.pop(case.case_id, None)
        else:
            self.cards[case.case_id] = Card.of(case)
        return True

    def page(
        self,
        visible: Sequence[str] | None,
        filters: Filters,
        now: datetime,
        limit: int,
        *,
        upto: datetime | None = None,
    ) -> tuple[list[Card], int]:
        """The first ``limit`` cards a user sees, sorted, and how many match in all.

        ``visible`` is the user's grids (``None``: every grid); ``upto`` keeps out
        cases filed after the moment the reviewer's page was drawn (they are
        counted in the "N new" bar instead of reshuffling the page).
        """
        scope = None if visible is None else frozenset(visible)
        chosen = [
            c
            for c in self.cards.values()
            if (scope is None or not scope.isdisjoint(c.grids))
            and filters.match(c)
            and (upto is None or c.filed_at <= upto)
        ]
        chosen.sort(key=lambda c: c.sort_key(now))
        return chosen[:limit], len(chosen)

    def facets(self, visible: Sequence[str] | None) -> dict[str, list[str]]:
        """The values present, for the filter menus."""
        scope = None if visible is None else frozenset(visible)
        cards = [c for c in self.cards.values() if scope is None or not scope.isdisjoint(c.grids)]
        return {
            "grid": sorted({g for c in cards for g in c.grids}),
            "category": sorted({c.category for c in cards}),
            "status": sorted({c.status.value for c in cards} | {CaseStatus.FILED.value}),
            "source_kind": sorted({k for c in cards for k in c.source_kinds}),
            "camera": sorted({cam for c in cards for cam in c.cameras}),
        }
