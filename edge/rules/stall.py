"""Illegal street stall (无序设摊 / 占道经营): people with stall objects, staying put.

A stall is goods or stall furniture (umbrella, table, chairs, a bicycle or
cart, boxes) standing still in a no-stall zone with people beside them. It
holds while at least ``min_objects`` stall objects have stood still in the
zone for ``settle_s``
and at least ``min_people`` people are near them (within ``near`` times a
person's height of a stall object); customers come and go, the stall stays,
so people are counted in the current frame, with ``grace_s`` for gaps.

The stall begins when people first stood by the stall objects, settled or
not: goods set out together with their vendor start the stall on arrival
(not ``settle_s`` later), and a vendor who joins bicycles that have stood
there for an hour starts it when he arrives (not an hour earlier).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from core.records import Slug
from detectors.detections import Detections
from edge.rules.base import CAMERA_RULES, HeldCondition, Holding, RuleBase, ZoneRule
from edge.stationary import StationaryMemory, shown
from edge.zones import Zone

STALL_OBJECTS = (
    "umbrella", "dining table", "chair", "bench", "bicycle", "suitcase", "potted plant",
    "bowl", "bottle", "cup", "banana", "apple", "orange", "broccoli", "carrot",
)  # fmt: skip
PERSON = frozenset({"person"})


class StallRuleConfig(RuleBase):
    """Stall objects stand still with people beside them in a no-stall zone for ``dwell_s``."""

    type: Literal["illegal_stall"]
    category: Slug = Field(default="illegal_stall", description="Case category it raises")
    objects: list[str] = Field(
        default_factory=lambda: list(STALL_OBJECTS),
        min_length=1,
        description="Detector classes that count as stall objects",
    )
    min_objects: int = Field(default=1, ge=1, description="Still stall objects needed")
    min_people: int = Field(default=1, ge=1, description="People near them needed")
    near: float = Field(
        default=1.5, gt=0, description="Near = within this many person heights of an object"
    )
    settle_s: float = Field(
        default=5.0, ge=0, description="Seconds an object must stand before it counts"
    )
    still_iou: float = Field(default=0.5, gt=0, lt=1, description="IoU that counts as not moved")


def _centres(xyxy: np.ndarray) -> np.ndarray:
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)


@CAMERA_RULES.register(StallRuleConfig)
class StallRule(ZoneRule):
    def __init__(self, cfg: StallRuleConfig, zone: Zone, timezone: str) -> None:
        super().__init__(cfg, zone, timezone)
        self.cfg: StallRuleConfig = cfg
        self.objects = frozenset(cfg.objects)
        self.memory = StationaryMemory(cfg.still_iou, cfg.grace_s)
        self.held = HeldCondition(cfg.grace_s)
        self.gathered = HeldCondition(cfg.grace_s)  # people by objects, settled or not

    def describe(self) -> str:
        return (
            f">= {self.cfg.min_objects} still stall object(s) with >= {self.cfg.min_people} "
            "people beside"
        )

    def reset(self) -> None:
        super().reset()
        self.memory.clear()
        self.held.clear()
        self.gathered.clear()

    def _people_near(self, people: Detections, objects: Detections) -> np.ndarray:
        if not len(people) or not len(objects):
            return np.zeros(len(people), dtype=bool)
        heights = people.xyxy[:, 3] - people.xyxy[:, 1]
        gaps = np.linalg.norm(
            _centres(people.xyxy)[:, None, :] - _centres(objects.xyxy)[None, :, :], axis=2
        )
        return np.asarray((gaps <= (self.cfg.near * heights)[:, None]).any(axis=1), dtype=bool)

    def condition(self, now: datetime, dets: Detections) -> Holding | None:
        things = self.in_zone(dets, self.objects)
        owners = self.memory.update(now, things)
        settled = self.memory.standing(self.cfg.settle_s)
        still_dets = shown(things, owners, settled)
        people = self.in_zone(dets, PERSON)
        near = people[self._people_near(people, still_dets)]
        gathered = len(things) >= self.cfg.min_objects and (
            int(self._people_near(people, things).sum()) >= self.cfg.min_people
        )
        gathered_since = self.gathered.update(now, gathered)
        holds = len(settled) >= self.cfg.min_objects and len(near) >= self.cfg.min_people
        held_since = self.held.update(now, holds)
        if held_since is None:
            return None
        # The stall began when its people gathered by the objects, which is
        # at most settle_s before the settled condition held.
        since = held_since
        if gathered_since is not None:
            since = max(gathered_since, held_since - timedelta(seconds=self.cfg.settle_s))
        standing = self.memory.standing(self.cfg.dwell_s)
        show = shown(things, owners, standing)
        return Holding(since, _concat(show, near))


def _concat(a: Detections, b: Detections) -> Detections:
    return Detections(
        xyxy=np.concatenate([a.xyxy, b.xyxy]),
        scores=np.concatenate([a.scores, b.scores]),
        class_ids=np.concatenate([a.class_ids, b.class_ids]),
        labels=a.labels,
    )
