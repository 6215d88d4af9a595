"""Illegal parking: a vehicle stands still inside a zone for a dwell time.

Each vehicle standing in the zone is remembered by *where* it stands: the
box it had when first seen. A later detection whose box overlaps that
anchor by ``still_iou`` is the same, unmoved vehicle, whatever a tracker
would have called it. A vehicle may go undetected for ``grace_s`` (a
person walking past, a missed frame) without losing its dwell time.

The rule fires once the oldest still vehicle has stood ``dwell_s`` (on a
frame where it is seen, so the snapshot shows it), and again every
``repeat_every_s`` while one still stands; the case pipeline
folds the repeats into one case. When no vehicle is left, the episode ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import Field

from detectors.detections import Detections, FloatArray, box_iou
from edge.zones import Zone
from streetwatch.config_base import Section
from streetwatch.records import Slug

VEHICLE_CLASSES = ("car", "truck", "bus", "motorcycle")


class ParkingRuleConfig(Section):
    """Illegal parking: a vehicle stands still inside a zone for ``dwell_s``."""

    type: Literal["illegal_parking"]
    rule_id: Slug
    zone: Slug = Field(description="zone_id on the same camera")
    category: Slug = Field(default="illegal_parking", description="Case category it raises")
    classes: list[str] = Field(
        default_factory=lambda: list(VEHICLE_CLASSES),
        min_length=1,
        description="Detector classes that count as vehicles",
    )
    min_score: float = Field(default=0.3, gt=0, le=1, description="Weaker detections are ignored")
    dwell_s: float = Field(default=60.0, gt=0, description="Seconds still before it fires")
    repeat_every_s: float = Field(
        default=60.0, gt=0, description="While it persists, raise again this often"
    )
    still_iou: float = Field(
        default=0.6, gt=0, lt=1, description="IoU with its first box that counts as not moved"
    )
    grace_s: float = Field(
        default=5.0, ge=0, description="How long a vehicle may go undetected and keep its dwell"
    )


@dataclass
class StillObject:
    anchor: FloatArray  # (4,) box when first seen
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class Firing:
    """The rule fired: since when, and which detections show it."""

    first_seen: datetime
    detections: Detections


class ParkingRule:
    def __init__(self, cfg: ParkingRuleConfig, zone: Zone) -> None:
        self.cfg = cfg
        self.zone = zone
        self.classes = frozenset(cfg.classes)
        self.objects: list[StillObject] = []
        self.last_fired: datetime | None = None

    @property
    def text(self) -> str:
        return (
            f"{'/'.join(self.cfg.classes)} still in zone {self.zone.zone_id} "
            f"for >= {self.cfg.dwell_s:g}s"
        )

    def candidates(self, dets: Detections) -> Detections:
        vehicles = dets.of_classes(self.classes)
        vehicles = vehicles[vehicles.scores >= self.cfg.min_score]
        return vehicles[self.zone.anchored_in(vehicles)]

    def observe(self, now: datetime, dets: Detections) -> Firing | None:
        seen = self.candidates(dets)
        matched = self._match(now, seen.xyxy)
        self.objects = [
            o for o in self.objects if (now - o.last_seen).total_seconds() <= self.cfg.grace_s
        ]
        parked = [
            o for o in self.objects if (now - o.first_seen).total_seconds() >= self.cfg.dwell_s
        ]
        if not parked:
            self.last_fired = None
            return None
        parked = [o for o in parked if o.last_seen == now]  # evidence must show it
        if not parked:
            return None
        due = (
            self.last_fired is None
            or (now - self.last_fired).total_seconds() >= self.cfg.repeat_every_s
        )
        if not due:
            return None
        self.last_fired = now
        parked_ids = {id(o) for o in parked}
        shown = np.array([id(matched[i]) in parked_ids for i in range(len(seen))], dtype=bool)
        return Firing(first_seen=min(o.first_seen for o in parked), detections=seen[shown])

    def _match(self, now: datetime, boxes: FloatArray) -> list[StillObject]:
        """Match boxes to remembered objects (greedy on IoU); new boxes start new objects."""
        anchors = (
            np.stack([o.anchor for o in self.objects])
            if self.objects
            else np.zeros((0, 4), np.float32)
        )
        iou = box_iou(boxes, anchors)
        owner: list[StillObject | None] = [None] * len(boxes)
        taken: set[int] = set()
        for flat in np.argsort(-iou, axis=None):
            b, o = divmod(int(flat), max(1, len(self.objects)))
            if iou[b, o] < self.cfg.still_iou:
                break
            if owner[b] is None and o not in taken:
                owner[b] = self.objects[o]
                taken.add(o)
        result: list[StillObject] = []
        for b, obj in enumerate(owner):
            if obj is None:
                obj = StillObject(anchor=boxes[b].copy(), first_seen=now, last_seen=now)
                self.objects.append(obj)
            obj.last_seen = now
            result.append(obj)
        return result
