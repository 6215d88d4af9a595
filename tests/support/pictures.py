"""Looking at evidence pictures in tests: how sharp a region is, how well a box is found."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import box_iou

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]


def sharpness(image: Image, box: Box) -> float:
    """Variance of the Laplacian of the grey picture inside ``box`` (xyxy)."""
    x1, y1, x2, y2 = box
    grey = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def best_iou(ref: Box, boxes: npt.NDArray[np.float32]) -> float:
    """The highest IoU of ``ref`` with any of ``boxes`` (0 with none)."""
    iou = box_iou(np.array([ref], np.float32), boxes.astype(np.float32))
    return float(iou.max()) if iou.size else 0.0


def read(path: str | Path) -> Image:
    """A BGR picture from disk; fails the test if it cannot be read."""
    image = cv2.imread(str(path))
    assert image is not None, path
    return np.asarray(image, np.uint8)
