"""Motion gating: run the detector only when the picture changed.

Most street cameras look at a scene that is still most of the time, and
the detector is by far the most expensive step per frame (tens of ms
against about one for this check). Each analysed frame is shrunk to
``width`` pixels wide, turned grey and blurred, and compared with a slowly
updated background (a running average). Pixels that differ by more than
``threshold`` are motion; if more than ``min_area`` of the picture moved,
the detector runs on the frame.

Stationary objects are exactly what this town cares about (a parked car, a
stall, a pile of goods) and they do not move. So a frame without motion
reuses the detections of the last detector run: nothing moved, so what was
there is still there. And so that a slow change (dusk, an object that
arrived during a long quiet spell and became part of the background) is
never missed for long, the detector also runs at least every
``full_check_every_s`` seconds whatever the motion says. Rules therefore
see every object on every analysed frame, with boxes at most
``full_check_every_s`` old, and their dwell times are unaffected.

The default full check, every 10 s, is short against any dwell time the
rules use (a minute or more for parking and stalls) and matches how often
Frigate re-checks its stationary objects (every 50 frames at 5 fps). On a
quiet street it is most of the detector's work, so it sets the saving.

Only motion that can matter wakes the detector: the motion picture is
limited to the camera's rule zones (every rule looks only at objects
standing in its zone, so a crowd on the road outside the parking bay is no
reason to run it) and areas under the ignore-masks (trees, a screen) are
blanked out. Something entering a zone moves inside it, so it still wakes
the detector on arrival.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import cv2
import numpy as np
import numpy.typing as npt

from detectors.base import Frame

BACKGROUND_ALPHA = 0.05  # weight of each new frame in the background average


class MotionGate:
    def __init__(
        self,
        width: int,
        threshold: int,
        min_area: float,
        full_check_every_s: float,
        masks: Sequence[Sequence[Sequence[float]]] = (),
        zones: Sequence[Sequence[Sequence[float]]] = (),
    ) -> None:
        self.width = width
        self.threshold = threshold
        self.min_area = min_area
        self.full_check_every_s = full_check_every_s
        self.masks = [np.array(m, np.float32) for m in masks]
        self.zones = [np.array(z, np.float32) for z in zones]
        self.background: npt.NDArray[np.float32] | None = None
        self.keep: npt.NDArray[np.uint8] | None = None
        self.last_full: datetime | None = None
        self.last_motion = 0.0  # share of the picture that moved, last frame

    def _small(self, image: Frame) -> npt.NDArray[np.uint8]:
        h, w = image.shape[:2]
        height = max(1, round(h * self.width / w))
        grey = cv2.cvtColor(
            cv2.resize(image, (self.width, height), interpolation=cv2.INTER_LINEAR),
            cv2.COLOR_BGR2GRAY,
        )
        grey = cv2.GaussianBlur(grey, (5, 5), 0)
        if self.keep is None:
            scale = self.width / w
            if self.zones:
                keep = np.zeros(grey.shape, np.uint8)
                for z in self.zones:
                    cv2.fillPoly(keep, [np.round(z * scale).astype(np.int32)], 255)
            else:
                keep = np.full(grey.shape, 255, np.uint8)
            for m in self.masks:
                cv2.fillPoly(keep, [np.round(m * scale).astype(np.int32)], 0)
            self.keep = keep
        return np.asarray(cv2.bitwise_and(grey, self.keep), dtype=np.uint8)

    def motion(self, image: Frame) -> float:
        """Share of the watched picture (zones less masks) that changed; updates the background."""
        small = self._small(image)
        if self.background is None or self.background.shape != small.shape:
            self.background = small.astype(np.float32)
            return 1.0
        assert self.keep is not None
        diff = cv2.absdiff(small, cv2.convertScaleAbs(self.background))
        moving = (diff > self.threshold) & (self.keep > 0)
        cv2.accumulateWeighted(small, self.background, BACKGROUND_ALPHA)
        watched = max(int(np.count_nonzero(self.keep)), 1)
        return float(np.count_nonzero(moving)) / watched

    def should_detect(self, image: Frame, at: datetime) -> bool:
        """True if the detector must run on this frame (motion, or a full check is due)."""
        self.last_motion = self.motion(image)
        due = (
            self.last_full is None
            or (at - self.last_full).total_seconds() >= self.full_check_every_s
        )
        if due or self.last_motion > self.min_area:
            self.last_full = at  # every run is over the whole frame
            return True
        return False
