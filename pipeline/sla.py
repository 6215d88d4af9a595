"""The "三个一" time limits of a case and their colour warnings (分色预警).

Every case gets three clocks when it is filed (or reopened):

- dispatch: dispatched within ``dispatch_min`` minutes (default 10),
- on site: someone there within ``on_site_min`` minutes (default 60),
- feedback: first feedback within ``feedback_working_days`` Chinese working
  days (default 1), counted with :class:`~pipeline.workdays.WorkCalendar`.

Dispatch and on-site are wall-clock minutes (staff work 7x24 in shifts). A
clock turns yellow once ``yellow_share`` of its allowance is used (for
feedback: of the working time) and red at its deadline. The policy is pure:
every method takes the clocks and returns new ones or the warnings that are
due; the case engine stores them and emits SLA_YELLOW / SLA_RED events, then
records the level with :meth:`SlaPolicy.warn` so each warning goes out once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from core.records import CaseStatus, SlaLevel, SlaStage, StageClock
from pipeline.config import SlaConfig
from pipeline.workdays import WorkCalendar

STAGES: tuple[SlaStage, ...] = (SlaStage.DISPATCH, SlaStage.ON_SITE, SlaStage.FEEDBACK)

# The stages a status shows were reached. Rejected and merged cases reach
# none: their clocks stop mattering because the case is terminal.
REACHES: dict[CaseStatus, frozenset[SlaStage]] = {
    CaseStatus.FILED: frozenset(),
    CaseStatus.DISPATCHED: frozenset({SlaStage.DISPATCH}),
    CaseStatus.ON_SITE: frozenset({SlaStage.DISPATCH, SlaStage.ON_SITE}),
    CaseStatus.HANDLED: frozenset(STAGES),
    CaseStatus.VERIFIED: frozenset(STAGES),
    CaseStatus.CLOSED: frozenset(STAGES),
    CaseStatus.SELF_HANDLED: frozenset(STAGES),
    CaseStatus.REJECTED: frozenset(),
    CaseStatus.MERGED: frozenset(),
}

_RANK: dict[SlaLevel, int] = {SlaLevel.GREEN: 0, SlaLevel.YELLOW: 1, SlaLevel.RED: 2}


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {moment.isoformat()}")


class SlaPolicy:
    """Starts, advances and checks the three clocks of a case.

    ``calendar`` defaults to one built from ``cfg`` (its extra dates and
    time zone); a calendar given explicitly must use ``cfg.timezone``.
    """

    def __init__(self, cfg: SlaConfig, calendar: WorkCalendar | None = None) -> None:
        if calendar is None:
            calendar = WorkCalendar.from_config(cfg)
        elif calendar.tz_name != cfg.timezone:
            raise ValueError(
                f"the work calendar counts days in {calendar.tz_name}, "
                f"but [sla] timezone is {cfg.timezone}"
            )
        self.cfg = cfg
        self.calendar = calendar

    def start(self, filed_at: datetime) -> tuple[StageClock, ...]:
        """Fresh green clocks for a case filed (or reopened) at ``filed_at``.

        Times are returned in the calendar's time zone.
        """
        _require_aware(filed_at, "filed_at")
        filed = filed_at.astimezone(self.calendar.tz)
        share = self.cfg.yellow_share
        clocks = []
        for stage, minutes in (
            (SlaStage.DISPATCH, self.cfg.dispatch_min),
            (SlaStage.ON_SITE, self.cfg.on_site_min),
        ):
            allowance = timedelta(minutes=minutes)
            clocks.append(
                StageClock(
                    stage=stage,
                    started_at=filed,
                    yellow_at=filed + allowance * share,
                    due_at=filed + allowance,
                )
            )
        working = timedelta(days=self.cfg.feedback_working_days)
        clocks.append(
            StageClock(
                stage=SlaStage.FEEDBACK,
                started_at=filed,
                yellow_at=self.calendar.add_working(filed, working * share),
                due_at=self.calendar.add_working(filed, working),
            )
        )
        return tuple(clocks)

    def reached(
        self, clocks: Sequence[StageClock], status: CaseStatus, at: datetime
    ) -> tuple[StageClock, ...]:
        """The clocks with ``met_at = at`` for the stages ``status`` reaches.

        A stage already met keeps its first ``met_at``; levels are unchanged.
        """
        _require_aware(at, "at")
        stages = REACHES[status]
        return tuple(
            c.model_copy(update={"met_at": at}) if c.stage in stages and c.met_at is None else c
            for c in clocks
        )

    def due(self, clocks: Sequence[StageClock], now: datetime) -> list[tuple[SlaStage, SlaLevel]]:
        """The warnings due at ``now``, one per stage at most, in clock order.

        A stage that is met needs none. RED is due from ``due_at`` on unless
        recorded already, YELLOW from ``yellow_at`` on while the clock is
        green; when both are due only RED is returned.
        """
        _require_aware(now, "now")
        warnings: list[tuple[SlaStage, SlaLevel]] = []
        for c in clocks:
            if c.met_at is not None or c.level is SlaLevel.RED:
                continue
            if now >= c.due_at:
                warnings.append((c.stage, SlaLevel.RED))
            elif c.level is SlaLevel.GREEN and now >= c.yellow_at:
                warnings.append((c.stage, SlaLevel.YELLOW))
        return warnings

    def warn(
        self, clocks: Sequence[StageClock], stage: SlaStage, level: SlaLevel
    ) -> tuple[StageClock, ...]:
        """The clocks with ``stage``'s warning ``level`` recorded (it never goes down)."""
        if level is SlaLevel.GREEN:
            raise ValueError("warn records a yellow or red warning, not green")
        if not any(c.stage == stage for c in clocks):
            raise ValueError(f"no {stage} clock among {[str(c.stage) for c in clocks]}")
        return tuple(
            c.model_copy(update={"level": level})
            if c.stage == stage and _RANK[level] > _RANK[c.level]
            else c
            for c in clocks
        )
