"""Low battery: raised below ``enter`` percent, cleared above ``exit`` percent."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from core.records import AlertPhase, SensorReading, Slug
from edge.sensor_rules.base import SENSOR_RULES, RuleEvent, SensorRule, SensorRuleBase


class LowBatteryConfig(SensorRuleBase):
    """The device's battery runs low."""

    type: Literal["low_battery"]
    rule_id: Slug = Field(default="battery", description="Names the rule within its device type")
    category: Slug = Field(default="low_battery", description="Case category it raises")
    enter: float = Field(default=20.0, ge=0, le=100, description="Raise below this percentage")
    exit: float = Field(default=30.0, ge=0, le=100, description="Clear above this percentage")

    @model_validator(mode="after")
    def _hysteresis(self) -> LowBatteryConfig:
        if self.exit < self.enter:
            raise ValueError(f"exit ({self.exit:g}) must be >= enter ({self.enter:g})")
        return self


@SENSOR_RULES.register(LowBatteryConfig)
class LowBatteryRule(SensorRule):
    def __init__(self, cfg: LowBatteryConfig, unit: str = "") -> None:
        super().__init__(cfg, "%")
        self.cfg: LowBatteryConfig = cfg
        self.raised_at: datetime | None = None

    @property
    def text(self) -> str:
        return f"battery below {self.cfg.enter:g}% (clears above {self.cfg.exit:g}%)"

    @property
    def levels(self) -> tuple[float, float]:
        return (self.cfg.enter, self.cfg.exit)

    @property
    def field(self) -> str:
        return "battery_pct"

    def observe(self, reading: SensorReading, t: datetime) -> RuleEvent | None:
        b = reading.battery_pct
        if b is None:
            return None
        if self.raised_at is None:
            if b < self.cfg.enter:
                self.raised_at = t
                return RuleEvent(AlertPhase.RAISED, t, t)
            return None
        if b > self.cfg.exit:
            first, self.raised_at = self.raised_at, None
            return RuleEvent(AlertPhase.CLEARED, first, t)
        return None
