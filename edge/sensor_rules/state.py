"""State events: alarm, tamper, a door or cover open too long.

A reading whose ``state`` is one of ``raise_on`` starts the condition; it
raises at once, or, with ``for_s``, once the device has stayed in such a
state that long — judged at the next reading or by the engine's tick, so a
door left open raises even if the contact sends nothing more. A state in
``clear_on`` (any other state when ``clear_on`` is empty) ends it and, if it
had raised, clears it. Other states and state-less readings change nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from core.records import AlertPhase, SensorReading
from edge.sensor_rules.base import SENSOR_RULES, RuleEvent, SensorRule, SensorRuleBase


class StateConfig(SensorRuleBase):
    """Reported states that raise (e.g. alarm, tamper, open) and those that clear."""

    type: Literal["state"]
    raise_on: list[str] = Field(min_length=1, description='States that raise, e.g. ["alarm"]')
    clear_on: list[str] = Field(
        default_factory=list,
        description='States that clear, e.g. ["normal"]; empty = any state not in raise_on',
    )
    for_s: float = Field(
        default=0.0, ge=0, description="Raise only once the state has lasted this long"
    )

    @model_validator(mode="after")
    def _disjoint(self) -> StateConfig:
        both = sorted(set(self.raise_on) & set(self.clear_on))
        if both:
            raise ValueError(f"states both raise and clear: {', '.join(both)}")
        return self


@SENSOR_RULES.register(StateConfig)
class StateRule(SensorRule):
    def __init__(self, cfg: StateConfig, unit: str = "") -> None:
        super().__init__(cfg, unit)
        self.cfg: StateConfig = cfg
        self.ticks = cfg.for_s > 0
        self._raise = frozenset(cfg.raise_on)
        self._clear = frozenset(cfg.clear_on)
        self.since: datetime | None = None
        self.raised = False

    @property
    def text(self) -> str:
        c = self.cfg
        out = f"state {'/'.join(c.raise_on)}"
        if c.for_s:
            out += f" for >= {c.for_s:g}s"
        if c.clear_on:
            out += f" (clears on {'/'.join(c.clear_on)})"
        return out

    def observe(self, reading: SensorReading, t: datetime) -> RuleEvent | None:
        s = reading.state
        if s is None:
            return None
        if s in self._raise:
            if self.since is None:
                self.since = t
            if self.raised or (t - self.since).total_seconds() < self.cfg.for_s:
                return None
            self.raised = True
            return RuleEvent(AlertPhase.RAISED, self.since, t, f"state {s}")
        if self._clear and s not in self._clear:
            return None
        since, was_raised = self.since, self.raised
        self.since = None
        self.raised = False
        if was_raised and since is not None:
            return RuleEvent(AlertPhase.CLEARED, since, t, f"state {s}")
        return None

    def tick(self, now: datetime) -> RuleEvent | None:
        since = self.since
        if self.raised or since is None or (now - since).total_seconds() < self.cfg.for_s:
            return None
        self.raised = True
        return RuleEvent(AlertPhase.RAISED, since, now, f"no change for {self.cfg.for_s:g}s")
