"""Heartbeat loss: a device silent for ``window_s`` is offline until it sends again.

Any message counts as a sign of life, timed by when it was received. The
engine's tick raises ``device_offline`` once when the silence passes
``window_s`` (``first_seen`` = the last message); the next message clears it
(the recovery event).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from core.records import AlertPhase, SensorReading, Slug
from edge.sensor_rules.base import SENSOR_RULES, RuleEvent, SensorRule, SensorRuleBase


class HeartbeatConfig(SensorRuleBase):
    """The device must send something at least every ``window_s`` seconds."""

    type: Literal["heartbeat"]
    rule_id: Slug = Field(default="heartbeat", description="Names the rule within its device type")
    category: Slug = Field(default="device_offline", description="Case category it raises")
    window_s: float = Field(gt=0, description="Offline after this many seconds without a message")


@SENSOR_RULES.register(HeartbeatConfig)
class HeartbeatRule(SensorRule):
    ticks = True

    def __init__(self, cfg: HeartbeatConfig, unit: str = "") -> None:
        super().__init__(cfg, unit)
        self.cfg: HeartbeatConfig = cfg
        self.last_heard: datetime | None = None
        self.offline_since: datetime | None = None

    @property
    def text(self) -> str:
        return f"no message for {self.cfg.window_s:g}s"

    def start(self, at: datetime) -> None:
        """Count silence from ``at`` for a device not heard from yet."""
        if self.last_heard is None:
            self.last_heard = at

    def observe(self, reading: SensorReading, t: datetime) -> RuleEvent | None:
        rx = reading.received_at
        if self.last_heard is None or rx > self.last_heard:
            self.last_heard = rx
        since = self.offline_since
        if since is None:
            return None
        self.offline_since = None
        return RuleEvent(AlertPhase.CLEARED, since, t, "back online")

    def tick(self, now: datetime) -> RuleEvent | None:
        last = self.last_heard
        if self.offline_since is not None or last is None:
            return None
        silent = (now - last).total_seconds()
        if silent <= self.cfg.window_s:
            return None
        self.offline_since = last
        return RuleEvent(AlertPhase.RAISED, last, now, f"silent for {silent:.0f}s")
