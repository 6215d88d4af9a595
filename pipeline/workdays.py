"""Chinese working days, and adding working time to a moment.

The "三个一" rule gives a case one *working day* for its first feedback.
Working days follow the State Council's yearly schedule: weekends and public
holidays are off, and make-up working days (调休) on a Saturday or Sunday are
on. The ``chinese_calendar`` package carries the schedule up to the year it
was released for; each new year's schedule is published late in the year
before, so a year the package does not know yet falls back to Monday-Friday
with a warning, and the year's dates can be added in the configuration
(``[sla] extra_holidays`` / ``extra_workdays``). Configured dates always win
over the package and over the fallback.

Working time counts whole days of the calendar's time zone: every moment of
a working day is working time (staff work in shifts around the clock), no
moment of a non-working day is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar  # type: ignore[import-untyped]

from pipeline.config import SlaConfig

log = logging.getLogger(__name__)

CONFIG_KEYS = "[sla] extra_holidays / extra_workdays"

# A calendar with no working day for this long is misconfigured (the
# fallback alone has five a week): stop instead of looping for ever.
_MAX_DAYS_OFF = 400


def _package_is_workday(day: date) -> bool | None:
    """The package's answer, or None when it has no data for the year."""
    try:
        answer = chinese_calendar.is_workday(day)
    except NotImplementedError:
        return None
    return bool(answer)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {moment.isoformat()}")


class WorkCalendar:
    """Which days are Chinese working days, and working-time arithmetic.

    ``extra_holidays`` and ``extra_workdays`` override the package and the
    Monday-Friday fallback. For a year the package does not know, one
    WARNING is logged per year and calendar, unless the configuration lists
    dates in that year (then it is taken as that year's schedule and the
    fallback is noted at INFO once).
    """

    def __init__(
        self,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        tz: str = "Asia/Shanghai",
    ) -> None:
        self.extra_holidays: frozenset[date] = frozenset(extra_holidays)
        self.extra_workdays: frozenset[date] = frozenset(extra_workdays)
        both = sorted(self.extra_holidays & self.extra_workdays)
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"{CONFIG_KEYS}: {listed} listed both as holiday and as workday")
        self.tz_name = tz
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"[sla] timezone: unknown time zone {tz!r}") from exc
        self._configured_years = {d.year for d in self.extra_holidays | self.extra_workdays}
        self._known: dict[date, bool] = {}
        self._fallback_years: set[int] = set()

    @classmethod
    def from_config(cls, cfg: SlaConfig) -> WorkCalendar:
        return cls(cfg.extra_holidays, cfg.extra_workdays, cfg.timezone)

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` (a date, not a datetime) is a working day."""
        if isinstance(day, datetime):
            raise TypeError("is_workday takes a date; use local_date() for a datetime")
        cached = self._known.get(day)
        if cached is not None:
            return cached
        if day in self.extra_workdays:
            answer = True
        elif day in self.extra_holidays:
            answer = False
        else:
            package = _package_is_workday(day)
            if package is None:
                self._note_fallback(day.year)
                answer = day.weekday() < 5
            else:
                answer = package
        self._known[day] = answer
        return answer

    def _note_fallback(self, year: int) -> None:
        if year in self._fallback_years:
            return
        self._fallback_years.add(year)
        if year in self._configured_years:
            log.info(
                "chinese_calendar %s has no data for %d: using Monday-Friday with the "
                "dates configured in %s",
                chinese_calendar.__version__,
                year,
                CONFIG_KEYS,
            )
            return
        log.warning(
            "chinese_calendar %s has no holiday data for %d: counting Monday-Friday as "
            "working days. Add that year's public holidays and make-up working days (调休) "
            "to %s, or upgrade chinese-calendar",
            chinese_calendar.__version__,
            year,
            CONFIG_KEYS,
        )

    def local_date(self, moment: datetime) -> date:
        """The calendar date of an aware ``moment`` in the calendar's time zone."""
        _require_aware(moment, "moment")
        return moment.astimezone(self.tz).date()

    def _midnight(self, day: date) -> datetime:
        """00:00 of ``day`` in the calendar's time zone, as UTC."""
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)

    def add_working(self, start: datetime, amount: timedelta) -> datetime:
        """The moment ``amount`` of working time after ``start``.

        Only moments on working days count. From a non-working day the count
        starts at 00:00 of the next working day; so one working day after
        Friday 17:00 is 17:00 on the next working day. When the amount runs
        out exactly at the end of a working day the result is that day's end
        (00:00 of the following calendar day), not the next working day.
        A zero amount returns ``start``. The result is in the calendar's
        time zone. Arithmetic is done in UTC, so it is also right in zones
        with daylight saving time (Asia/Shanghai has none).
        """
        _require_aware(start, "start")
        if amount < timedelta(0):
            raise ValueError(f"amount must not be negative, got {amount}")
        cursor = start.astimezone(UTC)
        remaining = amount
        days_off = 0
        while remaining > timedelta(0):
            day = cursor.astimezone(self.tz).date()
            day_end = self._midnight(day + timedelta(days=1))
            if self.is_workday(day):
                days_off = 0
                available = day_end - cursor
                if remaining <= available:
                    cursor += remaining
                    break
                remaining -= available
            else:
                days_off += 1
                if days_off > _MAX_DAYS_OFF:
                    raise RuntimeError(
                        f"no working day in the {_MAX_DAYS_OFF} days before {day}: "
                        f"check {CONFIG_KEYS}"
                    )
            cursor = day_end
        return cursor.astimezone(self.tz)
