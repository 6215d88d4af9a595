"""Reports over cases: hotspots (顽症) and SLA compliance per department.

Pure functions over lists of :class:`Case` (from any store) and two
renderers: an aligned terminal table that counts East Asian wide characters
as two columns, and CSV (UTF-8 with a byte-order mark, so spreadsheet
programs read the Chinese names right). ``streetwatch report hotspots|sla``
calls :func:`run_report`.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import Enum
from pathlib import Path
from typing import Any

from core.records import Case, CaseStatus, SlaStage
from pipeline.store.base import CaseStore

CHRONIC_AT = 3
"""Cases plus reopens at one site and category that make it a 顽症 (chronic problem)."""
NOT_COUNTED = frozenset({CaseStatus.REJECTED, CaseStatus.MERGED})
"""False alarms and cases folded into another are not problems of their own."""
UNROUTED = "(未分派)"
STAGE_ORDER = {stage: i for i, stage in enumerate(SlaStage)}
TIME_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class HotspotRow:
    """One site and category over the period."""

    site_id: str
    category: str
    place: str  # name of the place of the latest case
    cases: int  # filed in the period
    reopens: int  # sum of their reopen counts
    max_recurrence: int  # the highest "n-th case here" among them
    latest_filed_at: datetime
    chronic: bool  # 顽症: cases + reopens reached the threshold

    @property
    def weight(self) -> int:
        return self.cases + self.reopens


@dataclass(frozen=True)
class SlaRow:
    """One owning department and SLA stage over the cases filed in the period."""

    department: str
    stage: SlaStage
    clocks: int
    on_time: int  # met, at or before the deadline
    late: int  # met after the deadline
    overdue: int  # not met and the deadline has passed
    open_in_time: int  # not met, deadline still ahead

    @property
    def on_time_rate(self) -> float | None:
        """on_time / (met + overdue); None when nothing has been decided yet."""
        decided = self.on_time + self.late + self.overdue
        return self.on_time / decided if decided else None


ReportRow = HotspotRow | SlaRow


def _filed_in(case: Case, since: datetime, until: datetime) -> bool:
    return since <= case.filed_at < until and case.status not in NOT_COUNTED


def hotspots(
    cases: Sequence[Case], since: datetime, until: datetime, chronic_at: int = CHRONIC_AT
) -> list[HotspotRow]:
    """Per (site, category): cases filed in ``[since, until)``, most (cases + reopens) first.

    Rejected (false alarm) and merged cases are not counted.
    """
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        if _filed_in(case, since, until):
            groups.setdefault((case.site_id, case.category), []).append(case)
    rows = []
    for (site_id, category), group in groups.items():
        latest = max(group, key=lambda c: (c.filed_at, c.case_id))
        reopens = sum(c.reopen_count for c in group)
        rows.append(
            HotspotRow(
                site_id=site_id,
                category=category,
                place=latest.place.name or latest.place.place_id,
                cases=len(group),
                reopens=reopens,
                max_recurrence=max(c.recurrence for c in group),
                latest_filed_at=latest.filed_at,
                chronic=len(group) + reopens >= chronic_at,
            )
        )
    rows.sort(key=lambda r: (-r.weight, -r.latest_filed_at.timestamp(), r.site_id, r.category))
    return rows


def sla_report(
    cases: Sequence[Case], since: datetime, until: datetime, now: datetime
) -> list[SlaRow]:
    """Per (owning department, stage): how the deadlines of cases filed in the period went.

    Rejected and merged cases are not counted; a clock not met is overdue
    once its deadline is before ``now``.
    """
    counts: dict[tuple[str, SlaStage], list[int]] = {}
    for case in cases:
        if not _filed_in(case, since, until):
            continue
        department = case.route.owner if case.route is not None else UNROUTED
        for clock in case.sla:
            c = counts.setdefault((department, clock.stage), [0, 0, 0, 0])
            if clock.met_at is not None:
                c[0 if clock.met_at <= clock.due_at else 1] += 1
            else:
                c[2 if clock.due_at < now else 3] += 1
    return [
        SlaRow(department, stage, sum(c), c[0], c[1], c[2], c[3])
        for (department, stage), c in sorted(
            counts.items(), key=lambda kv: (kv[0][0], STAGE_ORDER[kv[0][1]])
        )
    ]


# -- rendering -----------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str  # in the terminal table
    name: str  # in the CSV header
    get: Callable[[Any], object]
    numeric: bool = False


COLUMNS: dict[type[Any], tuple[Column, ...]] = {
    HotspotRow: (
        Column("site", "site_id", lambda r: r.site_id),
        Column("place", "place", lambda r: r.place),
        Column("category", "category", lambda r: r.category),
        Column("cases", "cases", lambda r: r.cases, numeric=True),
        Column("reopens", "reopens", lambda r: r.reopens, numeric=True),
        Column("recurrence", "max_recurrence", lambda r: r.max_recurrence, numeric=True),
        Column("latest filed", "latest_filed_at", lambda r: r.latest_filed_at),
        Column("顽症", "chronic", lambda r: r.chronic),
    ),
    SlaRow: (
        Column("department", "department", lambda r: r.department),
        Column("stage", "stage", lambda r: r.stage),
        Column("clocks", "clocks", lambda r: r.clocks, numeric=True),
        Column("on time", "on_time", lambda r: r.on_time, numeric=True),
        Column("late", "late", lambda r: r.late, numeric=True),
        Column("overdue", "overdue", lambda r: r.overdue, numeric=True),
        Column("open", "open_in_time", lambda r: r.open_in_time, numeric=True),
        Column("on-time rate", "on_time_rate", lambda r: r.on_time_rate, numeric=True),
    ),
}


def display_width(text: str) -> int:
    """Terminal columns: East Asian wide and fullwidth characters take two."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _columns(rows: Sequence[ReportRow], row_type: type[Any] | None) -> tuple[Column, ...]:
    kind = row_type or (type(rows[0]) if rows else None)
    if kind is None:
        raise ValueError("no rows: say which report (row_type) they would be")
    return COLUMNS[kind]


def _cell(value: object, tz: tzinfo | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "是" if value else ""
    if isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, datetime):
        return (value.astimezone(tz) if tz is not None else value).strftime(TIME_FORMAT)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def render_table(
    rows: Sequence[ReportRow], row_type: type[Any] | None = None, tz: tzinfo | None = None
) -> str:
    """An aligned text table (times shown in ``tz``; default: as stored)."""
    columns = _columns(rows, row_type)
    table = [[c.header for c in columns]]
    table += [[_cell(c.get(r), tz) for c in columns] for r in rows]
    widths = [max(display_width(line[i]) for line in table) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width, col in zip(cells, widths, columns, strict=True):
            pad = " " * (width - display_width(cell))
            out.append(pad + cell if col.numeric else cell + pad)
        return "  ".join(out).rstrip()

    text = [line(table[0]), line(["-" * w for w in widths])]
    text += [line(cells) for cells in table[1:]]
    if not rows:
        text.append("(none)")
    return "\n".join(text) + "\n"


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def write_csv(rows: Sequence[ReportRow], path: Path, row_type: type[Any] | None = None) -> None:
    """The rows as CSV, UTF-8 with BOM; times ISO-8601 with offset, rates as fractions."""
    columns = _columns(rows, row_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([c.name for c in columns])
        writer.writerows([_csv_value(c.get(r)) for c in columns] for r in rows)


REPORTS = ("hotspots", "sla")


def run_report(
    kind: str,
    store: CaseStore,
    since: datetime,
    until: datetime,
    now: datetime,
    csv_path: Path | None,
) -> str:
    """The ``kind`` report ("hotspots" or "sla") over cases filed in ``[since, until)``.

    Times are shown in the timezone of ``since``; with ``csv_path`` the rows
    are written there too. Returns the table with a title line.
    """
    if kind not in REPORTS:
        raise ValueError(f"unknown report {kind!r}: one of {', '.join(REPORTS)}")
    cases = store.cases_filed_between(since, until)
    rows: Sequence[ReportRow]
    row_type: type[ReportRow]
    if kind == "hotspots":
        rows, row_type, title = hotspots(cases, since, until), HotspotRow, "Hotspots (顽症)"
    else:
        rows, row_type, title = sla_report(cases, since, until, now), SlaRow, "SLA (三个一)"
    if csv_path is not None:
        write_csv(rows, csv_path, row_type)
    tz = since.tzinfo
    counted = sum(c.status not in NOT_COUNTED for c in cases)
    head = (
        f"{title}: cases filed {since.strftime(TIME_FORMAT)} - "
        f"{until.astimezone(tz).strftime(TIME_FORMAT)} {since.strftime('%z')}, "
        f"{counted} counted"
    )
    if len(cases) != counted:
        head += f" ({len(cases) - counted} rejected or merged left out)"
    return head + "\n" + render_table(rows, row_type, tz)
