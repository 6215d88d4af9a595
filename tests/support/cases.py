"""Cases and store changes for the case store and report tests.

Times are minutes after ``T0`` (the same ``T0`` as :mod:`tests.support.factories`,
whose ``at`` counts seconds): ``at(10)`` is ten minutes in. A case is filed with
the usual three SLA clocks (dispatch 10 min, on site 1 h, feedback 1 day).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.records import (
    Case,
    CaseEvent,
    CaseEventType,
    CaseStatus,
    Place,
    Route,
    SlaStage,
    StageClock,
)
from pipeline.store import Change
from tests.support.factories import T0

__all__ = ["T0", "after", "at", "bump", "clocks", "event", "first", "make_case"]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def clocks(filed: datetime) -> tuple[StageClock, ...]:
    spans = {SlaStage.DISPATCH: 10, SlaStage.ON_SITE: 60, SlaStage.FEEDBACK: 24 * 60}
    return tuple(
        StageClock(
            stage=stage,
            started_at=filed,
            yellow_at=filed + timedelta(minutes=0.8 * m),
            due_at=filed + timedelta(minutes=m),
        )
        for stage, m in spans.items()
    )


def make_case(
    site: str = "s1",
    category: str = "illegal_parking",
    *,
    opening: str = "a1",
    filed: datetime = T0,
    recurrence: int = 1,
    owner: str = "城管中队",
    status: CaseStatus = CaseStatus.FILED,
    reopen_count: int = 0,
    sla: tuple[StageClock, ...] | None = None,
) -> Case:
    return Case(
        case_id=Case.make_id(category, site, opening),
        category=category,
        site_id=site,
        place=Place(place_id=site, name=f"{site} 路口"),
        place_ids=(site,),
        status=status,
        filed_at=filed,
        status_at=filed,
        closed_at=filed if status.terminal else None,
        first_seen=filed,
        last_seen=filed,
        alert_count=1,
        confidence=0.7,
        source_confidence={"camera:cam-1": 0.7},
        rule_texts=("vehicle still 5 min",),
        sources={"camera:cam-1": filed},
        evidence=(),
        route=Route(owner=owner, urgency=3, matched=f"{category}/*"),
        sla=clocks(filed) if sla is None else sla,
        reopen_count=reopen_count,
        recurrence=recurrence,
        version=1,
    )


def bump(case: Case, **update: Any) -> Case:
    return case.model_copy(update={"version": case.version + 1, **update})


def event(
    case: Case,
    cause: str,
    kind: CaseEventType = CaseEventType.UPDATED,
    emitted: datetime | None = None,
) -> CaseEvent:
    return CaseEvent.of_case(case, kind, cause, emitted or case.last_seen)


def first(case: Case, cause: str = "a1") -> Change:
    return Change(event(case, cause, CaseEventType.OPENED), None)


def after(old: Case, new: Case, cause: str) -> Change:
    return Change(event(new, cause), (old.case_id, old.version))
