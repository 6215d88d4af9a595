"""Shared base for rules about objects that stand still in a zone."""

from __future__ import annotations

from datetime import datetime

from detectors.detections import Detections
from edge.rules.base import Holding, RuleBase, ZoneRule
from edge.stationary import StationaryMemory, shown
from edge.zones import Zone


class StillObjectsRule(ZoneRule):
    """Holds while at least ``min_objects`` objects of ``classes`` stand still in the zone.

    The first-seen time is that of the oldest such object; the snapshot
    shows those that have stood the full dwell.
    """

    def __init__(
        self,
        cfg: RuleBase,
        zone: Zone,
        timezone: str,
        classes: list[str],
        still_iou: float,
        min_objects: int = 1,
    ) -> None:
        super().__init__(cfg, zone, timezone)
        self.classes = frozenset(classes)
        self.memory = StationaryMemory(still_iou, cfg.grace_s)
        self.min_objects = min_objects

    def reset(self) -> None:
        super().reset()
        self.memory.clear()

    def condition(self, now: datetime, dets: Detections) -> Holding | None:
        candidates = self.in_zone(dets, self.classes)
        owners = self.memory.update(now, candidates)
        standing = self.memory.standing(self.cfg.dwell_s)
        if len(self.memory.objects) < self.min_objects:
            return None
        since = sorted(o.first_seen for o in self.memory.objects)[self.min_objects - 1]
        return Holding(since=since, shown=shown(candidates, owners, standing))
