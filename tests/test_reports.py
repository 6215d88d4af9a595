"""Hotspot and SLA reports: counting, the aligned table, CSV, and through a real store."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.records import Case, CaseStatus, SlaStage, StageClock
from pipeline.reports import (
    HotspotRow,
    SlaRow,
    display_width,
    hotspots,
    render_table,
    run_report,
    sla_report,
    write_csv,
)
from pipeline.store import open_store
from tests.support.cases import at, first, make_case

SHANGHAI = ZoneInfo("Asia/Shanghai")
SINCE = datetime(2026, 11, 1, tzinfo=SHANGHAI)
UNTIL = datetime(2026, 12, 1, tzinfo=SHANGHAI)
NOW = at(120)  # two hours after T0


def met(case: Case, **met_after_min: float | None) -> Case:
    """The case with its clocks met this many minutes after filing (None: not met)."""
    sla: list[StageClock] = []
    for clock in case.sla:
        minutes = met_after_min.get(clock.stage.value)
        when = None if minutes is None else case.filed_at + timedelta(minutes=minutes)
        sla.append(clock.model_copy(update={"met_at": when}))
    return case.model_copy(update={"sla": tuple(sla)})


def hotspot_cases() -> list[Case]:
    return [
        make_case("s1", opening="a", filed=at(0), reopen_count=1),
        make_case("s1", opening="b", filed=at(600), recurrence=2),
        make_case("s2", "garbage_overflow", opening="c", filed=at(10)),
        make_case("s2", opening="d", filed=at(20), reopen_count=1),
        make_case("s3", opening="e", filed=at(30), status=CaseStatus.REJECTED),
        make_case("s1", opening="f", filed=at(40), status=CaseStatus.MERGED),
        make_case("s4", opening="g", filed=SINCE - timedelta(seconds=1)),  # before
        make_case("s4", opening="h", filed=UNTIL),  # the end is excluded
        make_case("s5", opening="i", filed=SINCE),  # the start is included
    ]


def test_hotspots_count_cases_and_reopens_per_site_and_category() -> None:
    rows = hotspots(hotspot_cases(), SINCE, UNTIL)
    got = [(r.site_id, r.category, r.cases, r.reopens, r.max_recurrence, r.chronic) for r in rows]
    assert got == [
        ("s1", "illegal_parking", 2, 1, 2, True),
        ("s2", "illegal_parking", 1, 1, 1, False),
        ("s2", "garbage_overflow", 1, 0, 1, False),
        ("s5", "illegal_parking", 1, 0, 1, False),
    ]
    assert rows[0].latest_filed_at == at(600)
    assert rows[0].place == "s1 路口"
    # ties (weight 1) go by the latest filing first
    assert rows[2].latest_filed_at > rows[3].latest_filed_at
    assert [r.chronic for r in hotspots(hotspot_cases(), SINCE, UNTIL, chronic_at=2)][:2] == [
        True,
        True,
    ]


def sla_cases() -> list[Case]:
    return [
        # 城管中队: dispatched on time, on site late, feedback still open
        met(make_case("s1", opening="x", filed=at(0)), dispatch=5, on_site=70),
        # 城管中队: nothing met: dispatch and on site overdue at NOW, feedback open
        met(make_case("s2", opening="y", filed=at(1))),
        # 环卫所: all on time
        met(
            make_case("s3", "garbage_overflow", opening="z", filed=at(2), owner="环卫所"),
            dispatch=1,
            on_site=30,
            feedback=600,
        ),
        # no route: met exactly at the deadline counts as on time
        met(make_case("s4", opening="v", filed=at(3)), dispatch=10).model_copy(
            update={"route": None}
        ),
        # a false alarm does not count
        met(make_case("s5", opening="w", filed=at(4), status=CaseStatus.REJECTED)),
    ]


def test_sla_report_per_department_and_stage() -> None:
    rows = sla_report(sla_cases(), SINCE, UNTIL, NOW)
    got = {(r.department, r.stage): r for r in rows}
    assert [(r.department, r.stage) for r in rows] == [
        ("(未分派)", SlaStage.DISPATCH),
        ("(未分派)", SlaStage.ON_SITE),
        ("(未分派)", SlaStage.FEEDBACK),
        ("城管中队", SlaStage.DISPATCH),
        ("城管中队", SlaStage.ON_SITE),
        ("城管中队", SlaStage.FEEDBACK),
        ("环卫所", SlaStage.DISPATCH),
        ("环卫所", SlaStage.ON_SITE),
        ("环卫所", SlaStage.FEEDBACK),
    ]
    assert got["城管中队", SlaStage.DISPATCH] == SlaRow(
        "城管中队", SlaStage.DISPATCH, 2, 1, 0, 1, 0
    )
    assert got["城管中队", SlaStage.DISPATCH].on_time_rate == 0.5
    assert got["城管中队", SlaStage.ON_SITE] == SlaRow("城管中队", SlaStage.ON_SITE, 2, 0, 1, 1, 0)
    assert got["城管中队", SlaStage.ON_SITE].on_time_rate == 0.0
    assert got["城管中队", SlaStage.FEEDBACK] == SlaRow(
        "城管中队", SlaStage.FEEDBACK, 2, 0, 0, 0, 2
    )
    assert got["城管中队", SlaStage.FEEDBACK].on_time_rate is None
    assert got["环卫所", SlaStage.FEEDBACK].on_time_rate == 1.0
    assert got["(未分派)", SlaStage.DISPATCH].on_time == 1
    # on site for the unrouted case: due at 60 min after filing, NOW is later
    assert got["(未分派)", SlaStage.ON_SITE].overdue == 1


def test_display_width_counts_wide_characters_twice() -> None:
    assert display_width("abc") == 3
    assert display_width("城管中队") == 8
    assert display_width("(未分派)") == 8
    assert display_width("\uff21\uff22") == 4  # fullwidth A B
    assert display_width("e\u0301") == 1  # combining accent


def test_table_columns_line_up_with_chinese_names() -> None:
    text = render_table(sla_report(sla_cases(), SINCE, UNTIL, NOW))
    lines = text.splitlines()
    assert lines[0].startswith("department")
    starts = set()
    for line in lines:
        first_cell = re.match(r"\S+ +", line)
        assert first_cell is not None
        starts.add(display_width(first_cell.group(0)))
    assert len(starts) == 1, text  # the stage column starts at one terminal column
    # the last column is right-aligned: every line ends at the same terminal column
    assert len({display_width(line) for line in lines}) == 1, text
    assert "50.0%" in text
    assert re.search(r"城管中队 +feedback +2 +0 +0 +0 +2 +-$", text, re.M), text


def test_hotspot_table_shows_times_in_the_given_zone() -> None:
    text = render_table(hotspots(hotspot_cases(), SINCE, UNTIL), tz=SHANGHAI)
    assert "2026-11-20 17:20" in text  # at(20) is 09:20 UTC
    assert "顽症" in text.splitlines()[0]
    empty = render_table([], HotspotRow)
    assert empty.splitlines()[0].startswith("site") and "(none)" in empty
    with pytest.raises(ValueError, match="row_type"):
        render_table([])


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "sla.csv"
    write_csv(sla_report(sla_cases(), SINCE, UNTIL, NOW), path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "department",
        "stage",
        "clocks",
        "on_time",
        "late",
        "overdue",
        "open_in_time",
        "on_time_rate",
    ]
    row = next(r for r in rows if r["department"] == "城管中队" and r["stage"] == "dispatch")
    assert row["on_time_rate"] == "0.5000" and row["overdue"] == "1"
    feedback = next(r for r in rows if r["department"] == "城管中队" and r["stage"] == "feedback")
    assert feedback["on_time_rate"] == ""
    hot = tmp_path / "hot.csv"
    write_csv(hotspots(hotspot_cases(), SINCE, UNTIL), hot)
    with hot.open(encoding="utf-8-sig", newline="") as f:
        first_row = next(csv.DictReader(f))
    assert first_row["chronic"] == "true"
    assert datetime.fromisoformat(first_row["latest_filed_at"]) == at(600)


def test_run_report_through_a_sqlite_store(tmp_path: Path) -> None:
    cases = hotspot_cases() + sla_cases()
    with open_store(f"sqlite:///{tmp_path / 'cases.db'}") as store:
        # several cases share a key: fed as the read model is, from the dispatch stream
        assert store.apply_many(first(c, c.case_id)[0] for c in cases) == len(cases)
        hot_csv, sla_csv = tmp_path / "hot.csv", tmp_path / "sla.csv"
        hot = run_report("hotspots", store, SINCE, UNTIL, NOW, hot_csv)
        sla = run_report("sla", store, SINCE, UNTIL, NOW, sla_csv)
        with pytest.raises(ValueError, match="unknown report"):
            run_report("busiest", store, SINCE, UNTIL, NOW, None)
    assert hot.splitlines()[0].startswith("Hotspots (顽症): cases filed 2026-11-01 00:00 - ")
    assert "+0800" in hot.splitlines()[0]
    assert "rejected or merged left out" in hot.splitlines()[0]
    assert hot_csv.is_file() and sla_csv.is_file()
    want = render_table(hotspots(cases, SINCE, UNTIL), HotspotRow, SHANGHAI)
    assert hot.split("\n", 1)[1] == want
    assert sla.split("\n", 1)[1] == render_table(
        sla_report(cases, SINCE, UNTIL, NOW), SlaRow, SHANGHAI
    )
