"""Piled goods (乱堆物): non-person objects left standing on the pavement."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.records import Slug
from edge.rules.base import CAMERA_RULES, RuleBase
from edge.rules.still_objects import StillObjectsRule
from edge.zones import Zone

GOODS_CLASSES = (
    "suitcase",
    "backpack",
    "handbag",
    "chair",
    "couch",
    "potted plant",
    "dining table",
)


class PiledGoodsRuleConfig(RuleBase):
    """Objects that are not people stand still in a pavement zone for ``dwell_s``."""

    type: Literal["piled_goods"]
    category: Slug = Field(default="piled_goods", description="Case category it raises")
    classes: list[str] = Field(
        default_factory=lambda: list(GOODS_CLASSES),
        min_length=1,
        description="Detector classes that count as goods",
    )
    min_objects: int = Field(default=1, ge=1, description="How many objects make a pile")
    still_iou: float = Field(default=0.5, gt=0, lt=1, description="IoU that counts as not moved")


@CAMERA_RULES.register(PiledGoodsRuleConfig)
class PiledGoodsRule(StillObjectsRule):
    def __init__(self, cfg: PiledGoodsRuleConfig, zone: Zone, timezone: str) -> None:
        super().__init__(cfg, zone, timezone, cfg.classes, cfg.still_iou, cfg.min_objects)
        self.cfg: PiledGoodsRuleConfig = cfg

    def describe(self) -> str:
        return f">= {self.cfg.min_objects} goods ({'/'.join(self.cfg.classes)}) left"
