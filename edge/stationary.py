"""Objects remembered by *where* they stand, not by a tracker's id.

A stall, a parked car or a pile of goods does not move, but detectors miss
it now and then and trackers give it a new id after a lighting change or an
occlusion (the failure that makes camera systems raise one problem as many).
``StationaryMemory`` keeps each still object as the box it had when first
seen (its anchor). A later detection overlapping an anchor by ``still_iou``
is that same object, whatever its track id; an object may go unseen for
``grace_s`` without losing its first-seen time. An object that moves off its
anchor stops matching and ages out: moving things never accumulate dwell.

Memory is bounded: objects unseen for ``grace_s`` are dropped, and at most
``max_objects`` are kept (the oldest-seen go first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections, FloatArray, box_iou


@dataclass
class StillObject:
    anchor: FloatArray  # (4,) box when first seen
    label: str
    first_seen: datetime
    last_seen: datetime

    def dwell(self) -> float:
        """Seconds it has been seen standing here (first to last sighting)."""
        return (self.last_seen - self.first_seen).total_seconds()


class StationaryMemory:
    def __init__(self, still_iou: float, grace_s: float, max_objects: int = 256) -> None:
        self.still_iou = still_iou
        self.grace_s = grace_s
        self.max_objects = max_objects
        self.objects: list[StillObject] = []

    def update(self, now: datetime, dets: Detections) -> list[StillObject]:
        """Match ``dets`` to remembered objects; return each detection's object."""
        owners = self._match(now, dets)
        self.objects = [
            o for o in self.objects if (now - o.last_seen).total_seconds() <= self.grace_s
        ]
        if len(self.objects) > self.max_objects:
            self.objects.sort(key=lambda o: o.last_seen, reverse=True)
            del self.objects[self.max_objects :]
        return owners

    def standing(self, dwell_s: float) -> list[StillObject]:
        """Objects seen standing at least ``dwell_s``, and still there (within grace).

        The span runs from first to *last* sighting: an anchor left behind by
        something that moved on stops growing, so passers-by never qualify.
        """
        return [o for o in self.objects if o.dwell() >= dwell_s]

    def clear(self) -> None:
        self.objects.clear()

    def _match(self, now: datetime, dets: Detections) -> list[StillObject]:
        boxes = dets.xyxy
        anchors = (
            np.stack([o.anchor for o in self.objects])
            if self.objects
            else np.zeros((0, 4), np.float32)
        )
        iou = box_iou(boxes, anchors)
        same_label: npt.NDArray[np.bool_] = np.array(
            [[dets.label(b) == o.label for o in self.objects] for b in range(len(boxes))],
            dtype=bool,
        ).reshape(iou.shape)
        iou = np.where(same_label, iou, 0.0)
        owner: list[StillObject | None] = [None] * len(boxes)
        taken: set[int] = set()
        width = max(1, len(self.objects))
        for flat in np.argsort(-iou, axis=None):
            b, o = divmod(int(flat), width)
            if iou[b, o] < self.still_iou:
                break
            if owner[b] is None and o not in taken:
                owner[b] = self.objects[o]
                taken.add(o)
        result: list[StillObject] = []
        for b, obj in enumerate(owner):
            if obj is None:
                obj = StillObject(boxes[b].copy(), dets.label(b), first_seen=now, last_seen=now)
                self.objects.append(obj)
            obj.last_seen = now
            result.append(obj)
        return result


def shown(dets: Detections, owners: list[StillObject], wanted: list[StillObject]) -> Detections:
    """The detections of this frame that belong to ``wanted`` objects."""
    ids = {id(o) for o in wanted}
    return dets[np.array([id(o) in ids for o in owners], dtype=bool)]
