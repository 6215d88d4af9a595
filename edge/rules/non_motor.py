"""Disorderly non-motor vehicles (非机动车乱停放): too many bikes parked in a zone."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.records import Slug
from edge.rules.base import CAMERA_RULES, RuleBase
from edge.rules.counting import StandingCountRule
from edge.zones import Zone


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


@CAMERA_RULES.register(NonMotorRuleConfig)
class NonMotorRule(StandingCountRule):
    def __init__(self, cfg: NonMotorRuleConfig, zone: Zone, timezone: str) -> None:
        super().__init__(
            cfg,
            zone,
            timezone,
            classes=frozenset(cfg.classes),
            still_iou=cfg.still_iou,
            settle_s=cfg.settle_s,
            enough=lambda n: n > cfg.max_parked,
            seen_now_only=False,
        )
        self.cfg: NonMotorRuleConfig = cfg

    def describe(self) -> str:
        return f"> {self.cfg.max_parked} {'/'.join(self.cfg.classes)} parked"
