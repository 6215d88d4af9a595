"""Crowd gathering (人员聚集): at least N people standing in a zone for T seconds.

People are counted only once they have stood in place for ``settle_s``
(remembered by where they stand, with a looser overlap than vehicles since
people sway), so a busy pavement with people walking through never counts
as a gathering, however many pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.records import Slug
from edge.rules.base import CAMERA_RULES, RuleBase
from edge.rules.counting import StandingCountRule
from edge.zones import Zone

PERSON = frozenset({"person"})


class CrowdRuleConfig(RuleBase):
    """``min_people`` people stand in the zone for ``dwell_s``."""

    type: Literal["crowd_gathering"]
    category: Slug = Field(default="crowd_gathering", description="Case category it raises")
    min_score: float = Field(default=0.5, gt=0, le=1, description="Weaker detections are ignored")
    min_people: int = Field(default=8, ge=2, description="People that make a crowd")
    settle_s: float = Field(default=5.0, ge=0, description="Seconds in place before one counts")
    still_iou: float = Field(default=0.3, gt=0, lt=1, description="IoU that counts as in place")


@CAMERA_RULES.register(CrowdRuleConfig)
class CrowdRule(StandingCountRule):
    def __init__(self, cfg: CrowdRuleConfig, zone: Zone, timezone: str) -> None:
        super().__init__(
            cfg,
            zone,
            timezone,
            classes=PERSON,
            still_iou=cfg.still_iou,
            settle_s=cfg.settle_s,
            enough=lambda n: n >= cfg.min_people,
            seen_now_only=True,
        )
        self.cfg: CrowdRuleConfig = cfg

    def describe(self) -> str:
        return f">= {self.cfg.min_people} people standing"
