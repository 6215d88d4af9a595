"""Disorderly non-motor vehicles (非机动车乱停放): too many bikes parked in a zone."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from detectors.detections import Detections
from edge.rules.base import HeldCondition, Holding, RuleBase, ZoneRule
from edge.stationary import StationaryMemory, shown
from edge.zones import Zone
from streetwatch.records import Slug


class NonMotorRuleConfig(RuleBase):
    """More than ``max_parked`` bicycles/motorcycles stand in the zone for ``dwell_s``."""

    type: Literal["disorderly_non_motor"]
    category: Slug = Field(default="disorderly_non_motor", description="Case category it raises")
    classes: list[str] = Field(
        default_factory=lambda: ["bicycle", "motorcycle"],
        min_length=1,
        description="Detector classes that count as non-motor vehicles",
    )
    max_parked: int = Field(default=5, ge=0, description="More than this many is disorderly")
    settle_s: float = Field(default=10.0, ge=0, description="Seconds still before one counts")
    still_iou: float = Field(default=0.5, gt=0, lt=1, description="IoU that counts as not moved")


class NonMotorRule(ZoneRule):
    def __init__(self, cfg: NonMotorRuleConfig, zone: Zone, timezone: str) -> None:
        super().__init__(cfg, zone, timezone)
        self.cfg: NonMotorRuleConfig = cfg
        self.classes = frozenset(cfg.classes)
        self.memory = StationaryMemory(cfg.still_iou, cfg.grace_s)
        self.held = HeldCondition(cfg.grace_s)

    def describe(self) -> str:
        return f"> {self.cfg.max_parked} {'/'.join(self.cfg.classes)} parked"

    def reset(self) -> None:
        super().reset()
        self.memory.clear()
        self.held.clear()

    def condition(self, now: datetime, dets: Detections) -> Holding | None:
        bikes = self.in_zone(dets, self.classes)
        owners = self.memory.update(now, bikes)
        parked = self.memory.standing(self.cfg.settle_s)
        since = self.held.update(now, len(parked) > self.cfg.max_parked)
        return None if since is None else Holding(since, shown(bikes, owners, parked))
