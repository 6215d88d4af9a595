"""Sensor threshold with hysteresis: one alarm per excursion.

The alarm fires when a reading rises above ``alarm_above`` and re-arms only
once a reading falls below ``clear_below``, so a value hovering at the
threshold raises one alarm, not one per reading.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streetwatch.config import SensorConfig
from streetwatch.records import SensorReading

CONTEXT_READINGS = 5


@dataclass
class ThresholdRule:
    cfg: SensorConfig
    armed: bool = True
    recent: deque[SensorReading] = field(default_factory=lambda: deque(maxlen=CONTEXT_READINGS))

    @property
    def text(self) -> str:
        unit = self.cfg.unit
        return (
            f"{self.cfg.device_type} above {self.cfg.alarm_above:g}{unit} "
            f"(re-arms below {self.cfg.clear_below:g}{unit})"
        )

    def observe(self, reading: SensorReading) -> tuple[SensorReading, ...] | None:
        """Return the readings that show the alarm when it fires, else None."""
        self.recent.append(reading)
        if reading.value is None:
            return None
        if self.armed and reading.value > self.cfg.alarm_above:
            self.armed = False
            return tuple(self.recent)
        if not self.armed and reading.value < self.cfg.clear_below:
            self.armed = True
        return None
