"""Illegal parking (违法停车): a vehicle stands still in a zone for ``dwell_s``.

Vehicles are judged by their bottom centre (where the wheels meet the road)
and remembered by where they stand (:mod:`edge.stationary`), so a missed
detection or a pedestrian walking past does not reset the dwell.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.records import Slug
from edge.rules.base import CAMERA_RULES, RuleBase
from edge.rules.still_objects import StillObjectsRule
from edge.zones import Zone

VEHICLE_CLASSES = ("car", "truck", "bus", "motorcycle")


class ParkingRuleConfig(RuleBase):
    """Illegal parking: a vehicle stands still inside a zone for ``dwell_s``."""

    type: Literal["illegal_parking"]
    category: Slug = Field(default="illegal_parking", description="Case category it raises")
    classes: list[str] = Field(
        default_factory=lambda: list(VEHICLE_CLASSES),
        min_length=1,
        description="Detector classes that count as vehicles",
    )
    still_iou: float = Field(
        default=0.6, gt=0, lt=1, description="IoU with its first box that counts as not moved"
    )


@CAMERA_RULES.register(ParkingRuleConfig)
class ParkingRule(StillObjectsRule):
    def __init__(self, cfg: ParkingRuleConfig, zone: Zone, timezone: str = "Asia/Shanghai") -> None:
        super().__init__(cfg, zone, timezone, cfg.classes, cfg.still_iou)
        self.cfg: ParkingRuleConfig = cfg

    def describe(self) -> str:
        return f"{'/'.join(self.cfg.classes)} still"
