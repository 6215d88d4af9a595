"""Rate of change: the value moves faster than ``max_per_min`` per minute.

The rate is measured between the newest reading and the oldest one within
``window_s`` before it (or, when no other reading is that recent, the one
before it), once the two are at least ``min_span_s`` apart. The rule raises
when the rate (signed by ``direction``) exceeds ``max_per_min`` and clears
when it falls below ``exit_per_min`` (default: half of ``max_per_min``).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from core.records import AlertPhase, SensorReading
from edge.sensor_rules.base import SENSOR_RULES, RuleEvent, SensorRule, SensorRuleBase
from edge.sensor_rules.threshold import ReadingField


class RateOfChangeConfig(SensorRuleBase):
    """The value rises (or falls) faster than a rate."""

    type: Literal["rate_of_change"]
    field: ReadingField = Field(default="value", description="The reading field it watches")
    direction: Literal["rise", "fall", "either"] = Field(
        default="rise", description="Which way of change counts"
    )
    max_per_min: float = Field(gt=0, description="Change per minute (in unit) that raises")
    exit_per_min: float | None = Field(
        default=None, ge=0, description="Clears below this rate; none = half of max_per_min"
    )
    window_s: float = Field(default=300.0, gt=0, description="Rate measured over this window")
    min_span_s: float = Field(
        default=60.0, ge=0, description="Readings at least this far apart before judging"
    )

    @model_validator(mode="after")
    def _levels(self) -> RateOfChangeConfig:
        if self.exit_per_min is not None and self.exit_per_min > self.max_per_min:
            raise ValueError("exit_per_min must be <= max_per_min")
        if self.min_span_s > self.window_s:
            raise ValueError("min_span_s must be <= window_s")
        return self

    @property
    def exit_rate(self) -> float:
        return self.max_per_min / 2 if self.exit_per_min is None else self.exit_per_min


@SENSOR_RULES.register(RateOfChangeConfig)
class RateOfChangeRule(SensorRule):
    def __init__(self, cfg: RateOfChangeConfig, unit: str = "") -> None:
        super().__init__(cfg, "%" if cfg.field == "battery_pct" else unit)
        self.cfg: RateOfChangeConfig = cfg
        self._battery = cfg.field == "battery_pct"
        self._sign = {"rise": 1, "fall": -1, "either": 0}[cfg.direction]
        self._exit = cfg.exit_rate
        self.points: deque[tuple[datetime, float]] = deque()
        self.raised_since: datetime | None = None

    @property
    def text(self) -> str:
        c = self.cfg
        way = {"rise": "rises", "fall": "falls", "either": "changes"}[c.direction]
        return (
            f"{c.field} {way} faster than {c.max_per_min:g}{self.unit}/min over "
            f"{c.window_s:g}s (clears below {self._exit:g}{self.unit}/min)"
        )

    @property
    def field(self) -> str:
        return self.cfg.field

    def rate(self) -> float | None:
        """Change per minute between the oldest kept reading and the newest, if judged."""
        pts = self.points
        (t0, v0), (t1, v1) = pts[0], pts[-1]
        span = (t1 - t0).total_seconds()
        if span <= 0 or span < self.cfg.min_span_s:
            return None
        return (v1 - v0) * 60.0 / span

    def observe(self, reading: SensorReading, t: datetime) -> RuleEvent | None:
        v = reading.battery_pct if self._battery else reading.value
        if v is None:
            return None
        pts = self.points
        pts.append((t, v))
        window = self.cfg.window_s
        while len(pts) > 2 and (t - pts[0][0]).total_seconds() > window:
            pts.popleft()
        rate = self.rate()
        if rate is None:
            return None
        r = abs(rate) if self._sign == 0 else rate * self._sign
        if self.raised_since is None:
            if r > self.cfg.max_per_min:
                self.raised_since = pts[0][0]
                return RuleEvent(AlertPhase.RAISED, pts[0][0], t, f"{rate:+.3g}{self.unit}/min")
            return None
        if r < self._exit:
            first, self.raised_since = self.raised_since, None
            return RuleEvent(AlertPhase.CLEARED, first, t, f"{rate:+.3g}{self.unit}/min")
        return None
