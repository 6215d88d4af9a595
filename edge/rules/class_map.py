"""A custom model's classes mapped to a case category (e.g. overflowing bins).

For models trained on the town's own problems: the classes named here,
standing still (or merely present, with ``stationary = false``) in the zone
for ``dwell_s``, raise ``category``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from core.records import Slug
from detectors.detections import Detections
from edge.rules.base import CAMERA_RULES, HeldCondition, Holding, RuleBase
from edge.rules.still_objects import StillObjectsRule
from edge.zones import Zone


class ClassMapRuleConfig(RuleBase):
    """Objects of the given classes in the zone for ``dwell_s`` raise ``category``."""

    type: Literal["class_map"]
    category: Slug = Field(description="Case category it raises, e.g. bin_overflow")
    classes: list[str] = Field(min_length=1, description="The model's class names that count")
    min_objects: int = Field(default=1, ge=1, description="How many must be present")
    stationary: bool = Field(default=True, description="Count only objects that stand still")
    still_iou: float = Field(default=0.5, gt=0, lt=1, description="IoU that counts as not moved")


@CAMERA_RULES.register(ClassMapRuleConfig)
class ClassMapRule(StillObjectsRule):
    def __init__(self, cfg: ClassMapRuleConfig, zone: Zone, timezone: str) -> None:
        super().__init__(cfg, zone, timezone, cfg.classes, cfg.still_iou, cfg.min_objects)
        self.cfg: ClassMapRuleConfig = cfg
        self.held = HeldCondition(cfg.grace_s)

    def describe(self) -> str:
        what = "still " if self.cfg.stationary else ""
        return f">= {self.cfg.min_objects} {what}{'/'.join(self.cfg.classes)}"

    def reset(self) -> None:
        super().reset()
        self.held.clear()

    def condition(self, now: datetime, dets: Detections) -> Holding | None:
        if self.cfg.stationary:
            return super().condition(now, dets)
        present = self.in_zone(dets, self.classes)
        since = self.held.update(now, len(present) >= self.cfg.min_objects)
        return None if since is None else Holding(since, present)
