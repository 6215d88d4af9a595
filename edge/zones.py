"""Zones: polygons in a camera's pixel coordinates."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import Detections


class Zone:
    def __init__(self, zone_id: str, polygon: Sequence[Sequence[float]]) -> None:
        self.zone_id = zone_id
        self.contour: npt.NDArray[np.float32] = np.array(polygon, np.float32).reshape(-1, 1, 2)

    def contains(self, x: float, y: float) -> bool:
        return cv2.pointPolygonTest(self.contour, (float(x), float(y)), False) >= 0

    def anchored_in(self, dets: Detections) -> npt.NDArray[np.bool_]:
        """Which detections stand in the zone, judged by their bottom centre.

        The bottom centre is where an object meets the ground, so a tall
        object in front of the zone is not counted as inside it.
        """
        xs = (dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2
        ys = dets.xyxy[:, 3]
        return np.array([self.contains(x, y) for x, y in zip(xs, ys, strict=True)], dtype=bool)
