"""The case engine over a real SQLite store: sites, reopening, lifecycle, SLA, routing."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.records import (
    Alert,
    CaseEvent,
    CaseEventType,
    CaseStatus,
    GridRef,
    SlaLevel,
    SlaStage,
    SourceKind,
    StatusUpdate,
)
from pipeline.case_engine import CaseEngine
from pipeline.store import Change, open_store
from pipeline.store.sqlite import SqliteCaseStore
from streetwatch.config import Config, parse_config
from tests.support.factories import at, sighting

# one street corner: two cameras' zones and a water-level sensor, a few metres apart
CORNER = [
    {"place_id": "corner-cam-east", "lat": 31.23040, "lon": 121.47370},
    {"place_id": "corner-cam-west", "lat": 31.23042, "lon": 121.47362},
    {"place_id": "corner-drain", "lat": 31.23038, "lon": 121.47366},
    {"place_id": "market-gate", "lat": 31.23200, "lon": 121.47500},
]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def config(**extra: object) -> Config:
    """The corner; every change published at once unless ``dedup`` says otherwise."""
    return parse_config({"places": CORNER, "dedup": {"coalesce_s": 0}, **extra})


def engine(
    cfg: Config | None = None, url: str = "sqlite://:memory:", clock: Clock | None = None
) -> CaseEngine:
    return CaseEngine.from_config(cfg or config(), open_store(url), clock or Clock(at(0)))


def three_sources(t: float = 10) -> list[Alert]:
    return [
        sighting(t, "cam-east", "corner-cam-east"),
        sighting(t + 5, "cam-west", "corner-cam-west", confidence=0.7),
        sighting(t + 8, "wl-0001", "corner-drain", kind=SourceKind.SENSOR, confidence=0.9),
    ]


def update(
    case_id: str, status: CaseStatus, seconds: float, uid: str | None = None
) -> StatusUpdate:
    return StatusUpdate(
        update_id=uid or f"u-{status}-{seconds}",
        case_id=case_id,
        status=status,
        at=at(seconds),
        by="城管中队",
    )


def close(
    eng: CaseEngine, case_id: str, seconds: float, status: CaseStatus = CaseStatus.CLOSED
) -> None:
    events, rejected = eng.on_updates([update(case_id, status, seconds)])
    assert not rejected and events[-1].case.status is status


def test_two_cameras_and_a_sensor_at_one_corner_are_one_corroborated_case() -> None:
    events = engine().on_alerts(three_sources())
    assert [e.type for e in events] == [
        CaseEventType.OPENED,
        CaseEventType.UPDATED,
        CaseEventType.UPDATED,
    ]
    case = events[-1].case
    assert {e.case_id for e in events} == {case.case_id}
    assert set(case.sources) == {"camera:cam-east", "camera:cam-west", "sensor:wl-0001"}
    assert case.site_id == "corner-cam-east"  # the smallest place id of the site
    assert set(case.place_ids) == {"corner-cam-east", "corner-cam-west", "corner-drain"}
    # two cameras are one witness (the better one); the sensor is another
    assert case.corroborated
    assert case.confidence == pytest.approx(1 - (1 - 0.7) * (1 - 0.9))
    assert [e.case.corroborated for e in events] == [False, False, True]


def test_a_place_further_than_the_merge_distance_is_another_case() -> None:
    eng = engine()
    events = eng.on_alerts([*three_sources(), sighting(20, "cam-gate", "market-gate")])
    assert len({e.case_id for e in events}) == 2


def test_a_place_group_joins_places_whatever_their_distance() -> None:
    cfg = config(
        place_groups=[{"group_id": "corner-and-gate", "places": ["corner-drain", "market-gate"]}]
    )
    events = engine(cfg).on_alerts([*three_sources(), sighting(20, "cam-gate", "market-gate")])
    assert {e.case.site_id for e in events} == {"corner-and-gate"}
    assert len({e.case_id for e in events}) == 1


def test_a_problem_back_five_minutes_after_closing_reopens_the_case() -> None:
    eng = engine()
    first = eng.on_alerts(three_sources())[-1].case
    close(eng, first.case_id, 600)
    back = eng.on_alerts([sighting(900, "cam-east", "corner-cam-east")])
    assert [e.type for e in back] == [CaseEventType.REOPENED]
    case = back[0].case
    assert (case.case_id, case.status, case.reopen_count) == (first.case_id, CaseStatus.FILED, 1)
    assert case.closed_at is None and case.filed_at == at(900)
    assert case.sla[0].started_at == at(900)  # the clocks start again


def test_a_problem_back_next_week_is_a_new_case_linked_to_the_old_ones() -> None:
    eng = engine()
    first = eng.on_alerts(three_sources())[-1].case
    close(eng, first.case_id, 600)
    week = 7 * 86400
    second = eng.on_alerts([sighting(week, "cam-east", "corner-cam-east")])[0].case
    assert second.case_id != first.case_id
    assert (second.recurrence, second.linked_case_ids) == (2, (first.case_id,))
    close(eng, second.case_id, week + 600, CaseStatus.SELF_HANDLED)
    third = eng.on_alerts([sighting(2 * week, "cam-west", "corner-cam-west")])[0].case
    assert (third.recurrence, third.linked_case_ids) == (3, (second.case_id, first.case_id))


def test_a_rejected_false_alarm_does_not_come_back_within_the_cool_down() -> None:
    eng = engine()
    first = eng.on_alerts([sighting(10, "cam-east", "corner-cam-east")])[0].case
    close(eng, first.case_id, 60, CaseStatus.REJECTED)
    again = eng.on_alerts([sighting(120, "cam-east", "corner-cam-east")])
    assert again[0].type is CaseEventType.UPDATED
    assert again[0].case.status is CaseStatus.REJECTED  # stays rejected, counted
    later = eng.on_alerts([sighting(3 * 86400, "cam-east", "corner-cam-east")])
    assert later[0].type is CaseEventType.OPENED and later[0].case.recurrence == 2


def test_redelivered_and_replayed_streams_give_identical_cases(tmp_path: Path) -> None:
    stream = [*three_sources(), sighting(40, "cam-east", "corner-cam-east")]
    eng = engine(url=f"sqlite:///{tmp_path / 'a.db'}")
    first = eng.on_alerts(stream)
    assert eng.on_alerts(stream) == []  # re-delivered: nothing changes
    replayed = engine(url=f"sqlite:///{tmp_path / 'b.db'}").on_alerts(stream)
    assert [(e.event_id, e.case) for e in replayed] == [(e.event_id, e.case) for e in first]


def test_status_updates_walk_the_lifecycle_and_meet_the_sla_stages() -> None:
    eng = engine()
    case = eng.on_alerts([sighting(0, "cam-east", "corner-cam-east")])[0].case
    steps = [
        (CaseStatus.DISPATCHED, 300),
        (CaseStatus.ON_SITE, 2400),
        (CaseStatus.HANDLED, 5000),
        (CaseStatus.VERIFIED, 6000),
        (CaseStatus.CLOSED, 6100),
    ]
    versions = []
    for status, t in steps:
        events, rejected = eng.on_updates([update(case.case_id, status, t)])
        assert not rejected
        versions.append(events[0].version)
        assert events[0].type is CaseEventType.STATUS_CHANGED
    assert versions == [2, 3, 4, 5, 6]
    final = eng.store.get(case.case_id)
    assert final is not None and final.closed_at == at(6100)
    met = {c.stage: c.met_at for c in final.sla}
    assert met == {
        SlaStage.DISPATCH: at(300),
        SlaStage.ON_SITE: at(2400),
        SlaStage.FEEDBACK: at(5000),
    }
    assert final.next_sla_at() is None


def test_bad_status_updates_are_rejected_with_a_reason_and_change_nothing() -> None:
    eng = engine()
    case = eng.on_alerts([sighting(0, "cam-east", "corner-cam-east")])[0].case
    ok, _ = eng.on_updates([update(case.case_id, CaseStatus.ON_SITE, 100, uid="u1")])
    assert len(ok) == 1
    again, rejected = eng.on_updates(
        [
            update(case.case_id, CaseStatus.ON_SITE, 100, uid="u1"),  # re-delivered: silent
            update(case.case_id, CaseStatus.DISPATCHED, 120),  # backwards
            update("case-nope", CaseStatus.CLOSED, 130),
            StatusUpdate(update_id="m", case_id=case.case_id, status=CaseStatus.MERGED, at=at(140)),
        ]
    )
    assert again == []
    assert [r.reason for r in rejected] == ["bad_transition", "unknown_case", "no_merge_target"]
    stored = eng.store.get(case.case_id)
    assert stored is not None and (stored.status, stored.version) == (CaseStatus.ON_SITE, 2)


def test_routing_picks_the_owner_by_category_and_grid() -> None:
    cfg = config(
        routing={
            "rules": [
                {
                    "category": "illegal_stall",
                    "grid": "micro-071",
                    "owner": "市场监管所",
                    "urgency": 2,
                },
            ],
            "urgency": {"piled_goods": 4},
        }
    )
    eng = engine(cfg)
    near_school = GridRef(large="town-01", micro="micro-071")
    elsewhere = GridRef(large="town-01", micro="micro-072")
    a = eng.on_alerts([sighting(0, "c1", "p1", category="illegal_stall", grids=near_school)])[
        0
    ].case
    b = eng.on_alerts([sighting(0, "c2", "p2", category="illegal_stall", grids=elsewhere)])[0].case
    c = eng.on_alerts([sighting(0, "c3", "p3", category="piled_goods")])[0].case
    d = eng.on_alerts([sighting(0, "c4", "p4", category="something_new")])[0].case
    assert a.route and (a.route.owner, a.route.urgency) == ("市场监管所", 2)
    assert b.route and (b.route.owner, b.route.assisting, b.route.urgency) == (
        "城管中队",
        ("市场监管所",),
        3,
    )
    assert c.route and (c.route.owner, c.route.urgency) == ("城管中队", 4)
    assert d.route and (d.route.owner, d.route.matched) == ("联勤联动中心", "default")


def test_sla_warnings_come_once_each_at_the_right_time() -> None:
    clock = Clock(at(0))
    eng = engine(clock=clock)
    case = eng.on_alerts([sighting(0, "cam-east", "corner-cam-east")])[0].case
    seen: list[CaseEvent] = []
    for minute in range(0, 70):
        clock.now = at(minute * 60)
        for _ in range(2):  # a second tick at the same time emits nothing more
            seen.extend(eng.tick())
        if minute == 9:
            eng.on_updates([update(case.case_id, CaseStatus.DISPATCHED, minute * 60)])
    got = [(e.stage, e.type, e.emitted_at) for e in seen]
    assert got == [
        (SlaStage.DISPATCH, CaseEventType.SLA_YELLOW, at(8 * 60)),  # 80% of 10 min
        (SlaStage.ON_SITE, CaseEventType.SLA_YELLOW, at(48 * 60)),  # 80% of 60 min
        (SlaStage.ON_SITE, CaseEventType.SLA_RED, at(60 * 60)),
    ]
    final = eng.store.get(case.case_id)
    assert final is not None
    levels = {c.stage: c.level for c in final.sla}
    assert levels[SlaStage.DISPATCH] is SlaLevel.YELLOW and levels[SlaStage.ON_SITE] is SlaLevel.RED
    assert [e.version for e in seen] == sorted({e.version for e in seen})


def test_two_workers_on_one_store_never_fork_a_case(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    a, b = engine(url=url), engine(url=url)
    case = a.on_alerts([sighting(0, "cam-east", "corner-cam-east")])[0].case
    b.on_updates([update(case.case_id, CaseStatus.DISPATCHED, 30)])  # a's cached head is stale now
    events = a.on_alerts([sighting(60, "cam-west", "corner-cam-west")])
    assert [e.version for e in events] == [3]
    assert events[0].case.status is CaseStatus.DISPATCHED and events[0].case.alert_count == 2
    assert a.stats.conflicts == 1
    # the other worker sees the same head
    b_events = b.on_alerts([sighting(90, "wl-0001", "corner-drain", kind=SourceKind.SENSOR)])
    assert [e.version for e in b_events] == [4]


def test_replay_times_are_alert_times_not_the_clock() -> None:
    cfg = config()
    early = CaseEngine.from_config(cfg, open_store("sqlite://:memory:"), Clock(at(0)))
    late = CaseEngine.from_config(
        cfg, open_store("sqlite://:memory:"), Clock(datetime(2030, 1, 1, tzinfo=UTC))
    )
    stream = three_sources()
    assert [e.case for e in early.on_alerts(stream)] == [e.case for e in late.on_alerts(stream)]


# -- coalescing: repeats of known sources are held and published together -----------------


def coalescing(clock: Clock, url: str = "sqlite://:memory:") -> CaseEngine:
    return engine(config(dedup={"coalesce_s": 10}), url=url, clock=clock)


def test_repeats_of_known_sources_are_held_and_published_once_after_coalesce_s() -> None:
    clock = Clock(at(0))
    eng = coalescing(clock)
    news = eng.on_alerts(three_sources())
    assert [e.type for e in news] == [CaseEventType.OPENED, *[CaseEventType.UPDATED] * 2]
    case_id = news[0].case_id
    repeats = [sighting(t, "cam-east", "corner-cam-east") for t in (30, 40, 50)]
    assert eng.on_alerts(repeats) == []
    assert eng.stats.held == 3
    stored = eng.store.get(case_id)
    assert stored is not None and (stored.alert_count, stored.version) == (6, 6)
    assert eng.store.unpublished(at(10_000), 100) == news  # nothing held is in the outbox

    clock.now = at(9)
    assert eng.release_held() == []  # waited 9 s of 10
    clock.now = at(10)
    (released,) = eng.release_held()
    assert (released.event_id, released.type, released.cause_id) == (
        f"{case_id}:v6",
        CaseEventType.UPDATED,
        "coalesced",
    )
    assert released.case == stored
    assert eng.release_held() == []  # once
    assert [e.version for e in eng.store.events_for(case_id)] == [1, 2, 3, 6]


def test_a_noteworthy_change_or_a_status_update_publishes_the_held_ones_with_it() -> None:
    clock = Clock(at(0))
    eng = coalescing(clock)
    case_id = eng.on_alerts(three_sources())[0].case_id
    assert eng.on_alerts([sighting(30, "cam-east", "corner-cam-east")]) == []
    # a new camera at the corner is news: its event carries the held repeat too
    (news,) = eng.on_alerts([sighting(40, "cam-north", "corner-cam-east")])
    assert (news.version, news.case.alert_count) == (5, 5)
    assert eng.on_alerts([sighting(50, "cam-east", "corner-cam-east")]) == []
    events, _ = eng.on_updates([update(case_id, CaseStatus.DISPATCHED, 60)])
    assert (events[0].version, events[0].case.alert_count) == (7, 6)
    clock.now = at(1000)
    assert eng.release_held() == []  # nothing left held


def test_a_change_after_a_held_one_is_decided_on_its_own() -> None:
    """Noteworthy compares with the case before the alert, held changes included."""
    eng = coalescing(Clock(at(0)))
    eng.on_alerts([sighting(10, "cam-east", "corner-cam-east")])
    stronger = sighting(20, "cam-east", "corner-cam-east").model_copy(update={"confidence": 0.9})
    assert eng.on_alerts([sighting(15, "cam-east", "corner-cam-east")]) == []
    (event,) = eng.on_alerts([stronger])
    assert event.case.confidence == pytest.approx(0.9)


def test_held_changes_give_the_same_event_for_an_id_however_the_stream_is_batched() -> None:
    stream = [
        *three_sources(),
        *[sighting(t, "cam-west", "corner-cam-west") for t in range(30, 90, 10)],
        sighting(95, "cam-south", "corner-cam-west"),
        *[sighting(t, "cam-east", "corner-cam-east") for t in range(100, 160, 10)],
    ]
    whole_clock, single_clock = Clock(at(0)), Clock(at(0))
    whole, single = coalescing(whole_clock), coalescing(single_clock)
    a = whole.on_alerts(stream)
    b: list[CaseEvent] = []
    for i, alert in enumerate(stream):  # one alert per batch, held ones released in between
        b += single.on_alerts([alert])
        single_clock.now = at(10 * (i + 1))
        b += single.release_held()
    whole_clock.now = at(1000)
    a += whole.release_held()
    by_id = {e.event_id: e.case for e in a}
    shared = [e for e in b if e.event_id in by_id]
    assert len(shared) >= 5 and all(by_id[e.event_id] == e.case for e in shared)
    assert len(b) > len(a)  # single published more of the held versions
    case_id = a[0].case_id
    assert whole.store.get(case_id) == single.store.get(case_id)


class CommitFailsOnce(SqliteCaseStore):
    """A real SQLite store whose next commit raises, as when the database goes away."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.failures_left = 1

    def commit(self, changes: Sequence[Change]) -> list[CaseEvent]:
        if self.failures_left:
            self.failures_left -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().commit(changes)


def test_a_batch_whose_commit_failed_folds_again_as_new_alerts() -> None:
    """The head cache holds committed heads only: a failed commit must not leave the
    batch's own folding behind, or the retry counts every alert a duplicate and the
    batch's offsets are committed with no case in the store."""
    store = CommitFailsOnce("sqlite://:memory:")
    eng = CaseEngine.from_config(config(), store, Clock(at(0)))
    alerts = three_sources()
    with pytest.raises(sqlite3.OperationalError):
        eng.on_alerts(alerts)
    assert store.all_cases() == []
    events = eng.on_alerts(alerts)  # the intake reads the batch again
    assert [e.type for e in events] == [
        CaseEventType.OPENED,
        CaseEventType.UPDATED,
        CaseEventType.UPDATED,
    ]
    assert eng.stats.duplicates == 0
    (case,) = store.all_cases()
    assert case.alert_count == 3 and case == events[-1].case
