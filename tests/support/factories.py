"""Small builders for detections and alerts, at times counted in seconds from ``T0``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from core.coco import COCO_CLASSES
from core.records import Alert, GridRef, Place, SourceKind
from detectors.detections import Detections

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def dets(*items: tuple[str, Sequence[float], float]) -> Detections:
    """Detections from (label, (x1, y1, x2, y2), score) triples."""
    if not items:
        return Detections.empty(COCO_CLASSES)
    return Detections(
        xyxy=np.array([box for _, box, _ in items], np.float32),
        scores=np.array([s for _, _, s in items], np.float32),
        class_ids=np.array([COCO_CLASSES.index(lbl) for lbl, _, _ in items], np.int32),
        labels=COCO_CLASSES,
    )


def alert(
    seconds: float,
    *,
    source: str = "cam-1",
    place: str = "bay-1",
    category: str = "illegal_parking",
    kind: SourceKind = SourceKind.CAMERA,
) -> Alert:
    observed = at(seconds)
    return Alert(
        alert_id=Alert.make_id(source, "r1", place, observed),
        category=category,
        place=Place(place_id=place),
        source_kind=kind,
        source_id=source,
        rule_id="r1",
        rule_text="vehicle still",
        first_seen=at(0),
        observed_at=observed,
        confidence=0.6,
    )


def sighting(
    seconds: float,
    source: str,
    place: str,
    *,
    kind: SourceKind = SourceKind.CAMERA,
    category: str = "water_level_high",
    confidence: float = 0.6,
    grids: GridRef | None = None,
) -> Alert:
    """One source's alert at ``place``, first seen ``seconds`` after ``T0`` (the case
    engine's view of a camera or sensor sighting)."""
    observed = at(seconds)
    return Alert(
        alert_id=Alert.make_id(source, "r1", place, observed),
        category=category,
        place=Place(place_id=place, grids=grids or GridRef()),
        source_kind=kind,
        source_id=source,
        rule_id="r1",
        rule_text="water on the road" if kind is SourceKind.CAMERA else "level above 0.6 m",
        first_seen=observed,
        observed_at=observed,
        confidence=confidence,
    )
