"""Folding alerts into cases: the pure logic behind the dispatch worker.

A case is one real problem: one ``category`` at one ``place``. The first
alert for a key opens a case whose id is derived from the key and that
alert's id, so a replayed stream opens the same case again, never a second
one. Later alerts update it (last seen, count, sources, evidence).

Every source (a camera, a device) records the ``observed_at`` of its latest
alert in the case; an alert from that source that is not newer is a
re-delivery or a replay and changes nothing (no event). A source's alerts
arrive in order because alerts are keyed by place and one partition holds
all of a place's alerts.

A *cleared* alert (the condition ended: a device back online, a level back
to normal) never opens a case; it marks an open one ``cleared_at``, and the
next raised alert unmarks it.
"""

from __future__ import annotations

from datetime import datetime

from streetwatch.records import (
    Alert,
    AlertPhase,
    Case,
    CaseEvent,
    CaseEventType,
    Evidence,
    EvidenceKind,
)

KEEP_LATEST_EVIDENCE = 4
KEEP_CLIPS = 3
KEEP_READINGS = 10


def case_key(category: str, place_id: str) -> str:
    return f"{category}|{place_id}"


def source_key(alert: Alert) -> str:
    return f"{alert.source_kind}:{alert.source_id}"


def _evidence(current: tuple[Evidence, ...], new: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    """Keep the first snapshot, the most recent few, and the latest clips (bounded)."""
    items = current + new
    clips = [e for e in items if e.kind is EvidenceKind.CLIP][-KEEP_CLIPS:]
    stills = [e for e in items if e.kind is not EvidenceKind.CLIP]
    keep = {id(e) for e in (*clips, *stills[:1], *stills[1:][-KEEP_LATEST_EVIDENCE:])}
    return tuple(e for e in items if id(e) in keep)


def open_case(alert: Alert) -> Case:
    return Case(
        case_id=Case.make_id(alert.category, alert.place.place_id, alert.alert_id),
        category=alert.category,
        place=alert.place,
        first_seen=alert.first_seen,
        last_seen=alert.observed_at,
        alert_count=1,
        confidence=alert.confidence,
        rule_texts=(alert.rule_text,),
        sources={source_key(alert): alert.observed_at},
        evidence=_evidence((), alert.evidence),
        readings=alert.readings[-KEEP_READINGS:],
        version=1,
    )


def absorb(case: Case, alert: Alert) -> Case | None:
    """The case updated by ``alert``, or None if the alert was seen before."""
    src = source_key(alert)
    latest = case.sources.get(src)
    if latest is not None and alert.observed_at <= latest:
        return None
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
    return case.model_copy(
        update={
            "first_seen": min(case.first_seen, alert.first_seen),
            "last_seen": max(case.last_seen, alert.observed_at),
            "alert_count": case.alert_count + 1,
            "confidence": max(case.confidence, alert.confidence),
            "rule_texts": rules,
            "sources": {**case.sources, src: alert.observed_at},
            "evidence": _evidence(case.evidence, alert.evidence),
            "readings": (*case.readings, *alert.readings)[-KEEP_READINGS:],
            "cleared_at": None,
            "version": case.version + 1,
        }
    )


def fold(current: Case | None, alert: Alert, now: datetime) -> CaseEvent | None:
    """Apply one alert to the case at its key; return the event, if any."""
    if current is None:
        if alert.phase is AlertPhase.CLEARED:
            return None  # nothing open to clear
        case, kind = open_case(alert), CaseEventType.OPENED
    else:
        updated = absorb(current, alert)
        if updated is None:
            return None
        case, kind = updated, CaseEventType.UPDATED
    return CaseEvent(
        event_id=f"{case.case_id}:v{case.version}",
        type=kind,
        case_id=case.case_id,
        version=case.version,
        alert_id=alert.alert_id,
        emitted_at=now,
        case=case,
    )
