"""What every detector plugin offers the edge worker."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from core.plugins import Plugins
from detectors.detections import Detections
from detectors.options import DetectorOptions

Frame = npt.NDArray[np.uint8]


class Detector(Protocol):
    """Turns one BGR frame (H, W, 3) into detections in its pixel space."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def detect(self, frame: Frame) -> Detections: ...


#: The detector plugins: each registers its config class with its factory
#: (``@DETECTORS.register(Config)``); :mod:`detectors.registry` lists them.
DETECTORS: Plugins[DetectorOptions, [], Detector] = Plugins("detector", default="nanodet")
