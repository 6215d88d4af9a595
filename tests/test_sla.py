"""Working days (chinese_calendar 1.11.0 data, real 2026 dates) and the "三个一" clocks.

The 2026 schedule in chinese_calendar 1.11.0 (the State Council's notice):
- New Year: 2026-01-01..03 off, Sunday 2026-01-04 a make-up working day.
- Spring Festival: 2026-02-15 (Sun)..02-23 (Mon) off; Saturdays 2026-02-14
  and 2026-02-28 are make-up working days.
- Qingming: 2026-04-04 (Sat)..04-06 (Mon) off.
- Mid-autumn: 2026-09-25 (Fri)..09-27 (Sun) off.
- National Day: 2026-10-01 (Thu)..10-07 (Wed) off; Sunday 2026-09-20 and
  Saturday 2026-10-10 are make-up working days.
``test_package_data_2026`` pins these facts, so the deadline tests below
fail loudly (rather than subtly) if the package data ever changes.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.records import CaseStatus, SlaLevel, SlaStage, StageClock
from pipeline.config import SlaConfig
from pipeline.sla import SlaPolicy
from pipeline.workdays import CONFIG_KEYS, WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
DAY = timedelta(days=1)
D, S, F = SlaStage.DISPATCH, SlaStage.ON_SITE, SlaStage.FEEDBACK
Y, R = SlaLevel.YELLOW, SlaLevel.RED


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pipeline.workdays" and r.levelno == logging.WARNING
    ]


# --- the package's data ---------------------------------------------------


@pytest.mark.parametrize(
    ("day", "weekday", "working"),
    [
        (date(2025, 12, 31), "Wed", True),
        (date(2026, 1, 1), "Thu", False),
        (date(2026, 1, 3), "Sat", False),
        (date(2026, 1, 4), "Sun", True),  # make-up day for New Year
        (date(2026, 2, 13), "Fri", True),
        (date(2026, 2, 14), "Sat", True),  # make-up day for Spring Festival
        (date(2026, 2, 15), "Sun", False),
        (date(2026, 2, 16), "Mon", False),
        (date(2026, 2, 23), "Mon", False),
        (date(2026, 2, 24), "Tue", True),
        (date(2026, 2, 28), "Sat", True),  # make-up day for Spring Festival
        (date(2026, 4, 3), "Fri", True),
        (date(2026, 4, 6), "Mon", False),
        (date(2026, 4, 7), "Tue", True),
        (date(2026, 9, 18), "Fri", True),
        (date(2026, 9, 19), "Sat", False),
        (date(2026, 9, 20), "Sun", True),  # make-up day for National Day
        (date(2026, 9, 24), "Thu", True),
        (date(2026, 9, 25), "Fri", False),  # Mid-autumn
        (date(2026, 9, 27), "Sun", False),
        (date(2026, 9, 28), "Mon", True),
        (date(2026, 9, 30), "Wed", True),
        (date(2026, 10, 1), "Thu", False),
        (date(2026, 10, 5), "Mon", False),
        (date(2026, 10, 7), "Wed", False),
        (date(2026, 10, 8), "Thu", True),
        (date(2026, 10, 9), "Fri", True),
        (date(2026, 10, 10), "Sat", True),  # make-up day for National Day
        (date(2026, 10, 11), "Sun", False),
    ],
)
def test_package_data_2026(
    day: date, weekday: str, working: bool, caplog: pytest.LogCaptureFixture
) -> None:
    assert day.strftime("%a") == weekday
    assert WorkCalendar().is_workday(day) is working
    assert warnings_logged(caplog) == []


def test_is_workday_refuses_a_datetime() -> None:
    with pytest.raises(TypeError):
        WorkCalendar().is_workday(sh(2026, 2, 14, 12))


# --- adding working time --------------------------------------------------


@pytest.mark.parametrize(
    ("start", "deadline"),
    [
        # Friday before Spring Festival: the next working day is make-up Saturday.
        (sh(2026, 2, 13, 17), sh(2026, 2, 14, 17)),
        # From that Saturday the next working day is after the 9 days off.
        (sh(2026, 2, 14, 17), sh(2026, 2, 24, 17)),
        # The Friday after: make-up Saturday 2026-02-28 again.
        (sh(2026, 2, 27, 17), sh(2026, 2, 28, 17)),
        # Friday before National Day's make-up Sunday 2026-09-20.
        (sh(2026, 9, 18, 17), sh(2026, 9, 20, 17)),
        # Thursday before Mid-autumn (Fri-Sun off): Monday.
        (sh(2026, 9, 24, 17), sh(2026, 9, 28, 17)),
        # Last working day before National Day: Thursday 10-08.
        (sh(2026, 9, 30, 17), sh(2026, 10, 8, 17)),
        # Friday after National Day: make-up Saturday 10-10.
        (sh(2026, 10, 9, 17), sh(2026, 10, 10, 17)),
        # Friday before Qingming (Sat-Mon off): Tuesday.
        (sh(2026, 4, 3, 17), sh(2026, 4, 7, 17)),
        # Across the year: 2025-12-31 -> make-up Sunday 2026-01-04.
        (sh(2025, 12, 31, 17), sh(2026, 1, 4, 17)),
        # An ordinary Friday: Monday.
        (sh(2026, 3, 6, 17), sh(2026, 3, 9, 17)),
        # Filed on a non-working Saturday: counting starts 00:00 on make-up
        # Sunday 09-20 and the day is used up at its end.
        (sh(2026, 9, 19, 17), sh(2026, 9, 21, 0)),
        # Filed on Mid-autumn Friday (a holiday): all of Monday 09-28.
        (sh(2026, 9, 25, 17), sh(2026, 9, 29, 0)),
        # Filed at 00:00 of a working day: its end.
        (sh(2026, 2, 14, 0), sh(2026, 2, 15, 0)),
    ],
)
def test_one_working_day(start: datetime, deadline: datetime) -> None:
    got = WorkCalendar().add_working(start, DAY)
    assert got == deadline
    assert got.tzinfo is not None
    assert got.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("amount", "deadline"),
    [
        (timedelta(0), sh(2026, 2, 13, 17)),
        (timedelta(hours=7), sh(2026, 2, 14, 0)),  # exactly the rest of Friday
        (timedelta(hours=12), sh(2026, 2, 14, 5)),
        (timedelta(hours=19, minutes=12), sh(2026, 2, 14, 12, 12)),  # 0.8 working day
        (timedelta(hours=31), sh(2026, 2, 15, 0)),  # Friday's 7 h + all of Saturday: its end
        (timedelta(hours=31, seconds=1), sh(2026, 2, 24, 0, 0) + timedelta(seconds=1)),
        (2 * DAY, sh(2026, 2, 24, 17)),
        (3 * DAY, sh(2026, 2, 25, 17)),
    ],
)
def test_amounts_from_friday_before_spring_festival(amount: timedelta, deadline: datetime) -> None:
    assert WorkCalendar().add_working(sh(2026, 2, 13, 17), amount) == deadline


def test_days_are_counted_in_shanghai_whatever_the_input_zone() -> None:
    cal = WorkCalendar()
    # 09:00 UTC is 17:00 in Shanghai.
    got = cal.add_working(datetime(2026, 2, 13, 9, tzinfo=UTC), DAY)
    assert got == sh(2026, 2, 14, 17)
    assert got.tzinfo == SH
    # 20:00 UTC on Friday 02-13 is 04:00 on Saturday 02-14 in Shanghai (a
    # make-up working day): 20 h that Saturday, then 4 h on Tuesday 02-24.
    assert cal.add_working(datetime(2026, 2, 13, 20, tzinfo=UTC), DAY) == sh(2026, 2, 24, 4)
    # 23:00 UTC on Saturday 09-19 is already Sunday 09-20 07:00 in Shanghai.
    berlin = datetime(2026, 9, 20, 1, tzinfo=ZoneInfo("Europe/Berlin"))  # 23:00 UTC 09-19
    assert cal.add_working(berlin, DAY) == sh(2026, 9, 21, 7)
    assert cal.local_date(berlin) == date(2026, 9, 20)


def test_working_time_is_elapsed_time_across_a_dst_change() -> None:
    # Not needed for Shanghai (no DST since 1991), but the arithmetic is in
    # UTC: Sunday 2026-03-29 in Berlin has 23 hours.
    berlin = ZoneInfo("Europe/Berlin")
    cal = WorkCalendar(extra_workdays=[date(2026, 3, 29)], tz="Europe/Berlin")
    start = datetime(2026, 3, 27, 17, tzinfo=berlin)  # Friday, CET
    got = cal.add_working(start, DAY)
    # 7 h on Friday, Saturday off, then 17 elapsed hours of Sunday: 18:00 CEST.
    assert got == datetime(2026, 3, 29, 18, tzinfo=berlin)
    assert got.utcoffset() == timedelta(hours=2)
    assert got.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=7 + 24 + 17)


def test_add_working_rejects_bad_input() -> None:
    cal = WorkCalendar()
    with pytest.raises(ValueError, match="aware"):
        cal.add_working(datetime(2026, 2, 13, 17), DAY)
    with pytest.raises(ValueError, match="negative"):
        cal.add_working(sh(2026, 2, 13, 17), -DAY)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        WorkCalendar(extra_holidays=[date(2027, 1, 1)], extra_workdays=[date(2027, 1, 1)])
    with pytest.raises(ValueError, match="timezone"):
        WorkCalendar(tz="Asia/Nowhere")
    with pytest.raises(RuntimeError, match="no working day"):
        year = [date(2027, 1, 1) + timedelta(days=n) for n in range(500)]
        WorkCalendar(extra_holidays=year).add_working(sh(2027, 1, 1), DAY)


# --- configured dates -----------------------------------------------------


def test_configured_dates_win_over_the_package(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkCalendar(
        extra_holidays=[date(2026, 2, 24)],  # a working Tuesday in the package
        extra_workdays=[date(2026, 2, 16)],  # a Spring Festival Monday in the package
    )
    assert not cal.is_workday(date(2026, 2, 24))
    assert cal.is_workday(date(2026, 2, 16))
    assert cal.add_working(sh(2026, 2, 14, 17), DAY) == sh(2026, 2, 16, 17)
    assert cal.add_working(sh(2026, 2, 16, 17), DAY) == sh(2026, 2, 25, 17)
    assert warnings_logged(caplog) == []


def test_unknown_year_falls_back_to_monday_friday_with_one_warning_per_year(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.workdays")
    cal = WorkCalendar()
    # 2027-01-01 is a Friday (really New Year's Day, but the package does not know).
    assert cal.is_workday(date(2027, 1, 1))
    assert not cal.is_workday(date(2027, 1, 2))
    assert not cal.is_workday(date(2027, 1, 3))
    assert cal.add_working(sh(2026, 12, 31, 17), DAY) == sh(2027, 1, 1, 17)
    assert cal.add_working(sh(2027, 1, 1, 17), DAY) == sh(2027, 1, 4, 17)
    assert cal.add_working(sh(2027, 10, 1, 17), 10 * DAY) == sh(2027, 10, 15, 17)
    warned = warnings_logged(caplog)
    assert len(warned) == 1
    assert "2027" in warned[0]
    assert CONFIG_KEYS in warned[0]
    assert "[sla] extra_holidays / extra_workdays" in warned[0]
    # Another unknown year warns once more, naming that year.
    assert cal.add_working(sh(2028, 1, 7, 17), DAY) == sh(2028, 1, 10, 17)
    assert cal.is_workday(date(2028, 3, 1))
    warned = warnings_logged(caplog)
    assert len(warned) == 2
    assert "2028" in warned[1]
    assert CONFIG_KEYS in warned[1]
    # Before the package's first year (2004) is unknown too.
    assert not cal.is_workday(date(2003, 1, 4))
    assert len(warnings_logged(caplog)) == 3


def test_unknown_year_honours_configured_dates(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.workdays")
    cfg = SlaConfig(
        extra_holidays=[date(2027, 1, 1), date(2027, 2, 8)],  # a Friday and a Monday
        extra_workdays=[date(2027, 2, 6)],  # a Saturday
    )
    cal = WorkCalendar.from_config(cfg)
    assert not cal.is_workday(date(2027, 1, 1))
    assert cal.is_workday(date(2027, 2, 6))
    # 2026-12-31 is a Thursday in the package's last year; Friday 2027-01-01
    # is a configured holiday, so Monday 2027-01-04.
    assert cal.add_working(sh(2026, 12, 31, 17), DAY) == sh(2027, 1, 4, 17)
    # Friday 2027-02-05: configured make-up Saturday 02-06.
    assert cal.add_working(sh(2027, 2, 5, 17), DAY) == sh(2027, 2, 6, 17)
    # From that Saturday: Monday 02-08 is configured off, so Tuesday.
    assert cal.add_working(sh(2027, 2, 6, 17), DAY) == sh(2027, 2, 9, 17)
    # The configured year is taken as its schedule: noted at INFO, no warning.
    assert warnings_logged(caplog) == []
    infos = [
        r.getMessage()
        for r in caplog.records
        if r.name == "pipeline.workdays" and r.levelno == logging.INFO
    ]
    assert len(infos) == 1
    assert "2027" in infos[0]
    # A year with no configured dates still warns.
    cal.is_workday(date(2028, 1, 3))
    warned = warnings_logged(caplog)
    assert len(warned) == 1
    assert "2028" in warned[0]


# --- the three clocks -----------------------------------------------------


def clock(clocks: tuple[StageClock, ...], stage: SlaStage) -> StageClock:
    (found,) = [c for c in clocks if c.stage is stage]
    return found


def times(c: StageClock) -> tuple[datetime, datetime, datetime]:
    return c.started_at, c.yellow_at, c.due_at


def test_start_friday_before_spring_festival() -> None:
    filed = sh(2026, 2, 13, 17)
    clocks = SlaPolicy(SlaConfig()).start(filed)
    assert [c.stage for c in clocks] == [D, S, F]
    assert times(clock(clocks, D)) == (filed, sh(2026, 2, 13, 17, 8), sh(2026, 2, 13, 17, 10))
    assert times(clock(clocks, S)) == (filed, sh(2026, 2, 13, 17, 48), sh(2026, 2, 13, 18))
    # 0.8 of a working day is 19 h 12 min: 7 h on Friday, 12 h 12 min on make-up Saturday.
    assert times(clock(clocks, F)) == (filed, sh(2026, 2, 14, 12, 12), sh(2026, 2, 14, 17))
    for c in clocks:
        assert c.met_at is None
        assert c.level is SlaLevel.GREEN
        assert c.started_at.tzinfo is not None
        assert c.due_at.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("filed", "yellow", "due"),
    [
        # Make-up Saturday before Spring Festival: 7 h, then 12 h 12 min of Tuesday 02-24.
        (sh(2026, 2, 14, 17), sh(2026, 2, 24, 12, 12), sh(2026, 2, 24, 17)),
        # Friday before make-up Sunday 09-20.
        (sh(2026, 9, 18, 17), sh(2026, 9, 20, 12, 12), sh(2026, 9, 20, 17)),
        # Filed on Mid-autumn Friday: all of Monday 09-28 is the allowance.
        (sh(2026, 9, 25, 17), sh(2026, 9, 28, 19, 12), sh(2026, 9, 29, 0)),
        # Last working day before National Day.
        (sh(2026, 9, 30, 17), sh(2026, 10, 8, 12, 12), sh(2026, 10, 8, 17)),
        # Mid-morning on a working day: the yellow falls after midnight.
        (sh(2026, 3, 4, 10), sh(2026, 3, 5, 5, 12), sh(2026, 3, 5, 10)),
    ],
)
def test_feedback_yellow_is_measured_in_working_time(
    filed: datetime, yellow: datetime, due: datetime
) -> None:
    feedback = clock(SlaPolicy(SlaConfig()).start(filed), F)
    assert (feedback.yellow_at, feedback.due_at) == (yellow, due)


def test_start_with_configured_allowances_and_another_input_zone() -> None:
    cfg = SlaConfig(dispatch_min=5, on_site_min=30, feedback_working_days=2, yellow_share=0.5)
    clocks = SlaPolicy(cfg).start(datetime(2026, 2, 13, 9, tzinfo=UTC))  # 17:00 Shanghai
    half_past = sh(2026, 2, 13, 17, 2) + timedelta(seconds=30)
    assert times(clock(clocks, D))[1:] == (half_past, sh(2026, 2, 13, 17, 5))
    assert times(clock(clocks, S))[1:] == (sh(2026, 2, 13, 17, 15), sh(2026, 2, 13, 17, 30))
    # Half of two working days is one: make-up Saturday 17:00; both: Tuesday 02-24.
    assert times(clock(clocks, F))[1:] == (sh(2026, 2, 14, 17), sh(2026, 2, 24, 17))
    assert all(c.started_at.tzinfo == SH for c in clocks)


def test_policy_uses_the_configured_calendar() -> None:
    cfg = SlaConfig(extra_holidays=[date(2026, 2, 14)])
    feedback = clock(SlaPolicy(cfg).start(sh(2026, 2, 13, 17)), F)
    assert feedback.due_at == sh(2026, 2, 24, 17)
    # An explicit calendar is used as given...
    own = WorkCalendar(extra_workdays=[date(2026, 2, 15)])
    feedback = clock(SlaPolicy(SlaConfig(), own).start(sh(2026, 2, 14, 17)), F)
    assert feedback.due_at == sh(2026, 2, 15, 17)
    # ...but must count days where the config says.
    with pytest.raises(ValueError, match="timezone"):
        SlaPolicy(SlaConfig(timezone="Asia/Tokyo"), WorkCalendar())


# --- warnings -------------------------------------------------------------


def run_timer(
    policy: SlaPolicy, clocks: tuple[StageClock, ...], until: datetime, step: timedelta
) -> tuple[tuple[StageClock, ...], list[tuple[datetime, SlaStage, SlaLevel]]]:
    """Poll ``due`` every ``step`` like a timer would, recording each warning."""
    sent: list[tuple[datetime, SlaStage, SlaLevel]] = []
    now = clocks[0].started_at
    while now <= until:
        for stage, level in policy.due(clocks, now):
            sent.append((now, stage, level))
            clocks = policy.warn(clocks, stage, level)
        now += step
    return clocks, sent


def test_due_sends_each_warning_once_at_its_time() -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    clocks, sent = run_timer(policy, clocks, sh(2026, 2, 25), timedelta(minutes=1))
    assert sent == [
        (sh(2026, 2, 13, 17, 8), D, Y),
        (sh(2026, 2, 13, 17, 10), D, R),
        (sh(2026, 2, 13, 17, 48), S, Y),
        (sh(2026, 2, 13, 18), S, R),
        (sh(2026, 2, 14, 12, 12), F, Y),
        (sh(2026, 2, 14, 17), F, R),
    ]
    assert [c.level for c in clocks] == [R, R, R]
    assert all(c.next_warning_at() is None for c in clocks)
    assert policy.due(clocks, sh(2026, 12, 31)) == []


def test_due_boundaries_with_an_injected_now() -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    second = timedelta(seconds=1)
    assert policy.due(clocks, sh(2026, 2, 13, 17)) == []
    assert policy.due(clocks, sh(2026, 2, 13, 17, 8) - second) == []
    assert policy.due(clocks, sh(2026, 2, 13, 17, 8)) == [(D, Y)]
    assert policy.due(clocks, datetime(2026, 2, 13, 9, 8, tzinfo=UTC)) == [(D, Y)]
    # Both levels due at once (nothing sent yet): only red, per stage.
    assert policy.due(clocks, sh(2026, 2, 13, 17, 10)) == [(D, R)]
    assert policy.due(clocks, sh(2026, 2, 13, 18)) == [(D, R), (S, R)]
    assert policy.due(clocks, sh(2026, 2, 14, 12, 12)) == [(D, R), (S, R), (F, Y)]
    assert policy.due(clocks, sh(2026, 2, 14, 17)) == [(D, R), (S, R), (F, R)]
    # A yellow recorded: nothing until red.
    yellow = policy.warn(clocks, D, Y)
    assert policy.due(yellow, sh(2026, 2, 13, 17, 9)) == []
    assert policy.due(yellow, sh(2026, 2, 13, 17, 10) - second) == []
    assert policy.due(yellow, sh(2026, 2, 13, 17, 10)) == [(D, R)]
    # A red recorded straight away (the yellow was skipped): nothing more.
    red = policy.warn(clocks, D, R)
    assert policy.due(red, sh(2026, 2, 13, 17, 30)) == []
    # Every clock's next_warning_at is the moment due() first names it.
    for c in clocks:
        at = c.next_warning_at()
        assert at is not None
        assert (c.stage, Y) in policy.due(clocks, at)
        assert all(s is not c.stage for s, _ in policy.due(clocks, at - second))


def test_a_late_timer_sends_red_without_yellow() -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    clocks = policy.reached(clocks, CaseStatus.ON_SITE, sh(2026, 2, 13, 17, 5))
    # The worker was down from Friday evening until Saturday 18:00.
    assert policy.due(clocks, sh(2026, 2, 14, 18)) == [(F, R)]
    clocks = policy.warn(clocks, F, R)
    assert policy.due(clocks, sh(2026, 2, 20)) == []


def test_met_stages_need_no_warning() -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    clocks = policy.reached(clocks, CaseStatus.DISPATCHED, sh(2026, 2, 13, 17, 7))
    clocks, sent = run_timer(policy, clocks, sh(2026, 2, 14, 12), timedelta(minutes=1))
    assert sent == [(sh(2026, 2, 13, 17, 48), S, Y), (sh(2026, 2, 13, 18), S, R)]
    # Met late: the recorded level stays, no more warnings.
    clocks = policy.reached(clocks, CaseStatus.ON_SITE, sh(2026, 2, 13, 18, 30))
    assert clock(clocks, S).level is R
    clocks = policy.reached(clocks, CaseStatus.HANDLED, sh(2026, 2, 14, 9))
    assert policy.due(clocks, sh(2026, 3, 1)) == []
    assert [c.met_at for c in clocks] == [
        sh(2026, 2, 13, 17, 7),
        sh(2026, 2, 13, 18, 30),
        sh(2026, 2, 14, 9),
    ]


@pytest.mark.parametrize(
    ("status", "met"),
    [
        (CaseStatus.FILED, set()),
        (CaseStatus.DISPATCHED, {D}),
        (CaseStatus.ON_SITE, {D, S}),
        (CaseStatus.HANDLED, {D, S, F}),
        (CaseStatus.VERIFIED, {D, S, F}),
        (CaseStatus.CLOSED, {D, S, F}),
        (CaseStatus.SELF_HANDLED, {D, S, F}),
        (CaseStatus.REJECTED, set()),
        (CaseStatus.MERGED, set()),
    ],
)
def test_reached_marks_the_stages_of_a_status(status: CaseStatus, met: set[SlaStage]) -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    at = sh(2026, 2, 13, 17, 20)
    after = policy.reached(clocks, status, at)
    assert {c.stage for c in after if c.met_at is not None} == met
    assert all(c.met_at == at for c in after if c.stage in met)
    assert [c.level for c in after] == [c.level for c in clocks]
    assert [times(c) for c in after] == [times(c) for c in clocks]


def test_reached_keeps_the_first_met_time() -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    clocks = policy.warn(clocks, S, Y)
    first = policy.reached(clocks, CaseStatus.DISPATCHED, sh(2026, 2, 13, 17, 6))
    again = policy.reached(first, CaseStatus.DISPATCHED, sh(2026, 2, 13, 17, 7))
    assert again == first
    closed = policy.reached(again, CaseStatus.CLOSED, sh(2026, 2, 14, 10))
    assert [c.met_at for c in closed] == [
        sh(2026, 2, 13, 17, 6),
        sh(2026, 2, 14, 10),
        sh(2026, 2, 14, 10),
    ]
    assert clock(closed, S).level is Y
    with pytest.raises(ValueError, match="aware"):
        policy.reached(clocks, CaseStatus.CLOSED, datetime(2026, 2, 14, 10))


def test_warn_records_the_level_and_never_lowers_it() -> None:
    policy = SlaPolicy(SlaConfig())
    clocks = policy.start(sh(2026, 2, 13, 17))
    red = policy.warn(clocks, F, R)
    assert [c.level for c in red] == [SlaLevel.GREEN, SlaLevel.GREEN, R]
    assert policy.warn(red, F, Y) == red
    assert clocks[2].level is SlaLevel.GREEN  # the input is not changed
    with pytest.raises(ValueError, match="green"):
        policy.warn(clocks, F, SlaLevel.GREEN)
    with pytest.raises(ValueError, match="feedback"):
        policy.warn(clocks[:2], F, Y)
    with pytest.raises(ValueError, match="aware"):
        policy.due(clocks, datetime(2026, 2, 14))
