"""What every detector plugin offers the edge worker."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections

Frame = npt.NDArray[np.uint8]


class Detector(Protocol):
    """Turns one BGR frame (H, W, 3) into detections in its pixel space."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def detect(self, frame: Frame) -> Detections: ...
