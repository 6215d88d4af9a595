"""Folding alerts into cases: the pure logic behind the dispatch worker.

A case is one real problem: one ``category`` at one *site* (places that are
the same place, :mod:`core.sites`). The newest case at a key is its
*head*. What an alert does depends on the head:

- no head, or the head ended more than ``reopen_within`` before the alert:
  a new case, linked to the earlier ones at the key (its ``recurrence``
  number counts them, for the 顽症 report);
- a head that is still open absorbs the alert (last seen, count, sources,
  evidence, readings; video and sensor alerts together corroborate);
- a head closed (or self-handled, merged) less than ``reopen_within`` ago is
  reopened: back to filed, SLA clocks started again;
- a head *rejected* as a false alarm less than ``reopen_within`` ago absorbs
  the alert quietly and stays rejected: a reviewer said no, and the same
  thing again soon after must not nag them.

Every source (a camera, a device) records the ``observed_at`` of its latest
alert in the case; an alert from that source that is not newer is a
re-delivery or a replay and changes nothing. So is an alert observed before
the previous case at the key ended: it belonged to that case. Ids come from the alerts, and
every time used is an alert's time, so a replayed stream gives the same cases.

A *cleared* alert (the condition ended) never opens a case; it marks an open
one ``cleared_at``, and the next raised alert unmarks it.

Not every absorbed alert is news: a stall watched by a camera that re-alerts
every minute adds a count, a time and a snapshot, but nothing a dispatcher
decides on. :func:`noteworthy` tells the two apart, so the worker can hold
the small changes back and publish them together (``[dedup] coalesce_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.records import (
    Alert,
    AlertPhase,
    Case,
    CaseEventType,
    CaseStatus,
    Evidence,
    EvidenceKind,
)
from pipeline.routing import Router
from pipeline.sla import SlaPolicy

KEEP_LATEST_EVIDENCE = 4
KEEP_CLIPS = 3
KEEP_READINGS = 10
KEEP_DETECTIONS = 50
KEEP_LINKS = 10


def source_key(alert: Alert) -> str:
    return f"{alert.source_kind}:{alert.source_id}"


@dataclass(frozen=True)
class Folding:
    """What folding needs besides the alert: routing, SLA clocks, the cool-down."""

    router: Router
    sla: SlaPolicy
    reopen_within: timedelta


def combined_confidence(per_source: dict[str, float]) -> tuple[float, bool]:
    """Best confidence per source kind, joined as independent witnesses.

    Two cameras on one corner share the detector's blind spots, so they
    count as one witness (the better one). A camera and a sensor fail for
    unrelated reasons: ``1 - (1 - video)(1 - sensor)``. Returns the
    confidence and whether more than one kind reported.
    """
    best: dict[str, float] = {}
    for src, conf in per_source.items():
        kind = src.split(":", 1)[0]
        best[kind] = max(best.get(kind, 0.0), conf)
    miss = 1.0
    for conf in best.values():
        miss *= 1.0 - conf
    return round(min(0.999, 1.0 - miss), 6), len(best) > 1


def _evidence(current: tuple[Evidence, ...], new: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    """Keep the first snapshot, the most recent few, the latest clips and the latest
    unannotated frame (the one ``Case.detections`` refer to), bounded."""
    if not new:
        return current
    items = current + new
    clips = [e for e in items if e.kind is EvidenceKind.CLIP][-KEEP_CLIPS:]
    frames = [e for e in items if e.kind is EvidenceKind.FRAME][-1:]
    stills = [e for e in items if e.kind not in (EvidenceKind.CLIP, EvidenceKind.FRAME)]
    keep = {id(e) for e in (*clips, *frames, *stills[:1], *stills[1:][-KEEP_LATEST_EVIDENCE:])}
    return tuple(e for e in items if id(e) in keep)


def open_case(alert: Alert, site_id: str, how: Folding, previous: Case | None) -> Case:
    src = source_key(alert)
    per_source = {src: alert.confidence}
    confidence, corroborated = combined_confidence(per_source)
    links: tuple[str, ...] = ()
    recurrence = 1
    previous_closed_at = None
    if previous is not None:
        links = (previous.case_id, *previous.linked_case_ids)[:KEEP_LINKS]
        recurrence = previous.recurrence + 1
        previous_closed_at = previous.closed_at
    filed = alert.observed_at
    return Case(
        case_id=Case.make_id(alert.category, site_id, alert.alert_id),
        category=alert.category,
        site_id=site_id,
        place=alert.place,
        place_ids=(alert.place.place_id,),
        filed_at=filed,
        status_at=filed,
        first_seen=alert.first_seen,
        last_seen=alert.observed_at,
        alert_count=1,
        confidence=confidence,
        source_confidence=per_source,
        corroborated=corroborated,
        rule_texts=(alert.rule_text,),
        sources={src: alert.observed_at},
        evidence=_evidence((), alert.evidence),
        readings=alert.readings[-KEEP_READINGS:],
        detections=alert.detections[:KEEP_DETECTIONS],
        route=how.router.route(alert.category, alert.place.grids),
        sla=how.sla.start(filed),
        recurrence=recurrence,
        linked_case_ids=links,
        previous_closed_at=previous_closed_at,
        version=1,
    )


def _seen(case: Case, alert: Alert) -> bool:
    """Seen before, or belonging to an earlier case at this key."""
    if case.previous_closed_at is not None and alert.observed_at <= case.previous_closed_at:
        return True
    latest = case.sources.get(source_key(alert))
    return latest is not None and alert.observed_at <= latest


def absorb(case: Case, alert: Alert) -> Case:
    """The case with ``alert`` folded in (the caller checked it is new)."""
    src = source_key(alert)
    if alert.phase is AlertPhase.CLEARED:
        return case.model_copy(
            update={
                "cleared_at": alert.observed_at,
                "sources": {**case.sources, src: alert.observed_at},
                "readings": (*case.readings, *alert.readings)[-KEEP_READINGS:],
                "version": case.version + 1,
            }
        )
    rules = case.rule_texts
    if alert.rule_text not in rules:
        rules = (*rules, alert.rule_text)
    places = case.place_ids
    if alert.place.place_id not in places:
        places = (*places, alert.place.place_id)
    per_source = {
        **case.source_confidence,
        src: max(case.source_confidence.get(src, 0.0), alert.confidence),
    }
    confidence, corroborated = combined_confidence(per_source)
    return case.model_copy(
        update={
            "first_seen": min(case.first_seen, alert.first_seen),
            "last_seen": max(case.last_seen, alert.observed_at),
            "alert_count": case.alert_count + 1,
            "confidence": max(case.confidence, confidence),
            "source_confidence": per_source,
            "corroborated": case.corroborated or corroborated,
            "rule_texts": rules,
            "place_ids": places,
            "sources": {**case.sources, src: alert.observed_at},
            "evidence": _evidence(case.evidence, alert.evidence),
            "readings": (*case.readings, *alert.readings)[-KEEP_READINGS:],
            "detections": alert.detections[:KEEP_DETECTIONS] or case.detections,
            "cleared_at": None,
            "version": case.version + 1,
        }
    )


def reopen(case: Case, alert: Alert, how: Folding) -> Case:
    """A closed case back to filed, with the new alert and fresh SLA clocks."""
    absorbed = absorb(case, alert)
    at = alert.observed_at
    return absorbed.model_copy(
        update={
            "status": CaseStatus.FILED,
            "status_at": at,
            "filed_at": at,
            "closed_at": None,
            "merged_into": None,
            "reason": None,
            "reopen_count": case.reopen_count + 1,
            "sla": how.sla.start(at),
        }
    )


def noteworthy(before: Case, after: Case) -> bool:
    """Whether absorbing an alert changed what a reviewer or dispatcher decides on.

    Noteworthy: a new source or place, a new rule, a change of confidence or
    corroboration, the condition ending or starting again, a new status. Not:
    one more alert of a source the case has (count, last seen, the newest
    snapshot, readings). Only the two cases decide, so a replay decides the same.
    """
    return (
        after.status is not before.status
        or after.sources.keys() != before.sources.keys()
        or after.place_ids != before.place_ids
        or after.rule_texts != before.rule_texts
        or after.confidence != before.confidence
        or after.corroborated != before.corroborated
        or (after.cleared_at is None) != (before.cleared_at is None)
    )


def shows(case: Case, alert: Alert) -> bool:
    """Whether ``case`` has ``alert`` folded in (its source's latest alert is as new).

    With held changes an alert may reach the dispatch stream inside a later
    event; a supervisor that waits for its alerts (the demo, tests) asks this of
    the cases it saw.
    """
    latest = case.sources.get(source_key(alert))
    return (
        latest is not None
        and latest >= alert.observed_at
        and case.category == alert.category
        and alert.place.place_id in case.place_ids
    )


def fold(
    head: Case | None, alert: Alert, site_id: str, how: Folding
) -> tuple[Case, CaseEventType] | None:
    """Apply one alert to the newest case at its key; None when nothing changes."""
    if head is not None and _seen(head, alert):
        return None
    raised = alert.phase is AlertPhase.RAISED
    if head is None:
        return (open_case(alert, site_id, how, None), CaseEventType.OPENED) if raised else None
    if not head.status.terminal:
        return absorb(head, alert), CaseEventType.UPDATED
    if not raised:
        return None  # the case is over; a late "condition ended" changes nothing
    assert head.closed_at is not None
    recent = alert.observed_at - head.closed_at <= how.reopen_within
    if not recent:
        return open_case(alert, site_id, how, head), CaseEventType.OPENED
    if head.status is CaseStatus.REJECTED:
        return absorb(head, alert), CaseEventType.UPDATED
    return reopen(head, alert, how), CaseEventType.REOPENED
