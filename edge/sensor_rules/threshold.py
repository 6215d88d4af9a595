"""Threshold with hysteresis and hold-down: one alert per excursion.

The condition is *entered* by a reading beyond ``enter`` (above it, or below
it for ``direction = "below"``) and *left* only by a reading back past
``exit``; readings between the two levels change nothing, so a value
hovering at ``enter`` raises one alert, not one per reading.

Hold-down makes a short excursion not count:

- ``hold_s``: the condition must have held (entered and not left) for this
  many seconds, judged at each reading;
- ``n_of_m = [N, M]``: at least N of the device's last M readings must be
  beyond ``enter``.

With both, both must hold. The rule raises at the first reading that
satisfies them (``first_seen`` = when the condition was entered) and
clears at the first reading back past ``exit``.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.records import AlertPhase, SensorReading
from edge.sensor_rules.base import SENSOR_RULES, RuleEvent, SensorRule, SensorRuleBase

ReadingField = Literal["value", "battery_pct"]


class ThresholdConfig(SensorRuleBase):
    """A level with hysteresis: raised beyond ``enter``, cleared back past ``exit``."""

    type: Literal["threshold"]
    field: ReadingField = Field(default="value", description="The reading field it watches")
    direction: Literal["above", "below"] = Field(
        default="above", description="Raise above enter (e.g. water level) or below it"
    )
    enter: float = Field(description="A reading beyond this enters the condition")
    exit: float = Field(description="A reading back past this leaves it (hysteresis)")
    hold_s: float = Field(
        default=0.0, ge=0, description="Seconds the condition must hold before it raises"
    )
    n_of_m: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[N, M]: N of the last M readings must be beyond enter",
    )

    @field_validator("n_of_m")
    @classmethod
    def _n_le_m(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not 1 <= v[0] <= v[1] <= 1000:
            raise ValueError("must be [N, M] with 1 <= N <= M <= 1000")
        return v

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdConfig:
        if self.direction == "above" and self.exit > self.enter:
            raise ValueError(f"exit ({self.exit:g}) must be <= enter ({self.enter:g}) for above")
        if self.direction == "below" and self.exit < self.enter:
            raise ValueError(f"exit ({self.exit:g}) must be >= enter ({self.enter:g}) for below")
        return self


def level_text(field: str, direction: str, enter: float, exit: float, unit: str) -> str:
    back = "below" if direction == "above" else "above"
    name = "battery" if field == "battery_pct" else field
    return f"{name} {direction} {enter:g}{unit} (clears {back} {exit:g}{unit})"


@SENSOR_RULES.register(ThresholdConfig)
class ThresholdRule(SensorRule):
    def __init__(self, cfg: ThresholdConfig, unit: str = "") -> None:
        super().__init__(cfg, "%" if cfg.field == "battery_pct" else unit)
        self.cfg: ThresholdConfig = cfg
        self._above = cfg.direction == "above"
        self._enter = cfg.enter
        self._exit = cfg.exit
        self._hold_s = cfg.hold_s
        self._battery = cfg.field == "battery_pct"
        self._n, m = cfg.n_of_m if cfg.n_of_m is not None else (0, 0)
        self._window: deque[bool] | None = deque(maxlen=m) if m else None
        self._count = 0
        self.raised = False
        self.entered: datetime | None = None

    @property
    def text(self) -> str:
        c = self.cfg
        out = level_text(c.field, c.direction, c.enter, c.exit, self.unit)
        if c.hold_s:
            out += f" for >= {c.hold_s:g}s"
        if c.n_of_m is not None:
            out += f" in {c.n_of_m[0]} of the last {c.n_of_m[1]} readings"
        return out

    @property
    def levels(self) -> tuple[float, float]:
        return (self.cfg.enter, self.cfg.exit)

    @property
    def field(self) -> str:
        return self.cfg.field

    def observe(self, reading: SensorReading, t: datetime) -> RuleEvent | None:
        v = reading.battery_pct if self._battery else reading.value
        if v is None:
            return None
        if self._above:
            beyond, back = v > self._enter, v < self._exit
        else:
            beyond, back = v < self._enter, v > self._exit
        window = self._window
        if window is not None:
            if len(window) == window.maxlen and window[0]:
                self._count -= 1
            window.append(beyond)
            self._count += beyond
        if self.raised:
            if not back:
                return None
            first = self.entered or t
            self.raised = False
            self.entered = None
            return RuleEvent(AlertPhase.CLEARED, first, t)
        if back:
            self.entered = None
            return None
        if beyond and self.entered is None:
            self.entered = t
        entered = self.entered
        if entered is None:
            return None
        if self._hold_s and (t - entered).total_seconds() < self._hold_s:
            return None
        if window is not None and self._count < self._n:
            return None
        self.raised = True
        return RuleEvent(AlertPhase.RAISED, entered, t)
