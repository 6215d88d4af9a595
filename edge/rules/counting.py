"""Shared base for rules that count objects standing in a zone (crowds, bikes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from detectors.detections import Detections
from edge.rules.base import HeldCondition, Holding, RuleBase, ZoneRule
from edge.stationary import StationaryMemory, shown
from edge.zones import Zone


class StandingCountRule(ZoneRule):
    """Holds while ``enough(count)`` of objects of ``classes`` that stood ``settle_s``.

    With ``seen_now_only`` an object counts only on frames where it is seen
    (people in a crowd come and go; a gap is bridged by the held condition's
    grace); otherwise it counts while the memory keeps it (parked bikes hidden
    for a moment are still parked).
    """

    def __init__(
        self,
        cfg: RuleBase,
        zone: Zone,
        timezone: str,
        *,
        classes: frozenset[str],
        still_iou: float,
        settle_s: float,
        enough: Callable[[int], bool],
        seen_now_only: bool,
    ) -> None:
        super().__init__(cfg, zone, timezone)
        self.classes = classes
        self.settle_s = settle_s
        self.enough = enough
        self.seen_now_only = seen_now_only
        self.memory = StationaryMemory(still_iou, cfg.grace_s)
        self.held = HeldCondition(cfg.grace_s)

    def reset(self) -> None:
        super().reset()
        self.memory.clear()
        self.held.clear()

    def condition(self, now: datetime, dets: Detections) -> Holding | None:
        objects = self.in_zone(dets, self.classes)
        owners = self.memory.update(now, objects)
        counted = self.memory.standing(self.settle_s)
        if self.seen_now_only:
            counted = [o for o in counted if o.last_seen == now]
        since = self.held.update(now, self.enough(len(counted)))
        return None if since is None else Holding(since, shown(objects, owners, counted))
