"""Folding alerts into cases (pure logic)."""

from __future__ import annotations

from collections.abc import Iterable

from core.records import Alert, AlertPhase, CaseEvent, CaseEventType, SourceKind
from pipeline.case_engine import CaseEngine
from pipeline.store import open_store
from streetwatch.config import parse_config
from tests.support.factories import alert, at


def engine() -> CaseEngine:
    """Every change published at once (coalescing has its tests in test_case_engine)."""
    cfg = parse_config({"dedup": {"coalesce_s": 0}})
    return CaseEngine.from_config(cfg, open_store("sqlite://:memory:"), clock=lambda: at(1000))


def run(alerts: Iterable[Alert], table: CaseEngine | None = None) -> list[CaseEvent]:
    table = engine() if table is None else table
    return [e for a in alerts for e in table.on_alerts([a])]


def test_repeats_at_one_place_update_one_case() -> None:
    events = run(alert(s) for s in (10, 20, 30))
    assert [e.type for e in events] == [CaseEventType.OPENED, *[CaseEventType.UPDATED] * 2]
    assert {e.case_id for e in events} == {events[0].case_id}
    last = events[-1].case
    assert (last.alert_count, last.version, last.last_seen) == (3, 3, at(30))
    assert [e.event_id for e in events] == [f"{last.case_id}:v{v}" for v in (1, 2, 3)]


def test_other_place_or_category_is_another_case() -> None:
    events = run([alert(10), alert(10, place="bay-2"), alert(10, category="piled_goods")])
    assert len({e.case_id for e in events}) == 3


def test_redelivered_alerts_change_nothing() -> None:
    table = engine()
    first = run([alert(10), alert(20)], table)
    again = run([alert(10), alert(20)], table)
    assert again == []
    assert first[-1].case.alert_count == 2


def test_replaying_the_stream_gives_identical_cases() -> None:
    stream = [alert(10), alert(10, source="wl-1", kind=SourceKind.SENSOR), alert(20)]
    a, b = run(stream), run(stream)
    assert [(e.event_id, e.case) for e in a] == [(e.event_id, e.case) for e in b]


def test_two_sources_at_one_place_are_one_case_with_both_sources() -> None:
    events = run([alert(10), alert(15, source="cam-2")])
    assert len({e.case_id for e in events}) == 1
    assert set(events[-1].case.sources) == {"camera:cam-1", "camera:cam-2"}


def test_case_keeps_its_clip_first_snapshot_and_latest_snapshots() -> None:
    from core.records import Evidence, EvidenceKind

    def ev(kind: EvidenceKind, s: int) -> Evidence:
        return Evidence(
            kind=kind,
            path=f"/e/{kind}-{s}",
            sha256=f"{s:064x}",
            media_type="image/jpeg",
            captured_at=at(s),
        )

    first = alert(10).model_copy(
        update={"evidence": (ev(EvidenceKind.SNAPSHOT, 10), ev(EvidenceKind.CLIP, 10))}
    )
    later = [
        alert(s).model_copy(update={"evidence": (ev(EvidenceKind.SNAPSHOT, s),)})
        for s in range(20, 100, 10)
    ]
    case = run([first, *later])[-1].case
    assert [e.path for e in case.evidence] == [
        "/e/snapshot-10",
        "/e/clip-10",
        "/e/snapshot-60",
        "/e/snapshot-70",
        "/e/snapshot-80",
        "/e/snapshot-90",
    ]


def cleared(a: Alert) -> Alert:
    return a.model_copy(update={"phase": AlertPhase.CLEARED, "alert_id": a.alert_id + "-cleared"})


def test_a_cleared_alert_marks_the_open_case_and_never_opens_one() -> None:
    table = engine()
    assert run([cleared(alert(5, kind=SourceKind.SENSOR))], table) == []  # nothing open
    events = run([alert(10), alert(20), cleared(alert(30)), cleared(alert(30))], table)
    assert [e.case.version for e in events] == [1, 2, 3]  # the re-delivered clear: no-op
    assert events[-1].case.cleared_at == at(30)
    assert events[-1].case.alert_count == 2  # a clear is not a sighting
    again = run([alert(40)], table)
    assert again[0].case.cleared_at is None and again[0].case.alert_count == 3
