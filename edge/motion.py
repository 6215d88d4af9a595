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

Where to look (``regions``, off by default): motion confined to part of
the picture (one person walking into a corner of the zone) runs the
detector on a square crop around the moving pixels rather than on the
whole frame, as Frigate does. The crop is
the box of the moving pixels, widened by ``REGION_MARGIN`` on each side
and to at least ``MIN_REGION`` of the frame's short side, so the object
that moved is seen whole and at a higher resolution than the frame scaled
down to the model's input would give (small, far objects are found
better). Detections from the crop replace the cached ones lying wholly
inside it; cached ones reaching outside it stay (the crop did not see them
whole, and nothing moved there). A crop covering
more than ``MAX_REGION_SHARE`` of the frame is not worth it: the whole
frame is analysed. The camera worker falls back to a whole-frame run when
an object in the crop touches the crop's edge (it may be cut in two).
It is a trade: a region run leaves the full-check clock running (only a
whole frame shows what changed elsewhere), and a cut object costs a second
run, so on the gating bench's street regions cost about 60% more detector
runs than whole frames; they pay where distant objects are too small for
the model at whole-frame scale.

Only motion that can matter wakes the detector: the motion picture is
limited to the camera's rule zones (every rule looks only at objects
standing in its zone, so a crowd on the road outside the parking bay is no
reason to run it) and areas under the ignore-masks (trees, a screen) are
blanked out. Something entering a zone moves inside it, so it still wakes
the detector on arrival.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
import numpy.typing as npt

from detectors.base import Frame

BACKGROUND_ALPHA = 0.05  # weight of each new frame in the background average
REGION_MARGIN = 0.5  # widen the moving pixels' box by this share of its size, each side
MIN_REGION = 0.5  # a crop is at least this share of the frame's short side
MAX_REGION_SHARE = 0.5  # a larger crop than this share of the frame: analyse the whole frame

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class GateDecision:
    """Whether to run the detector, and on what: the whole frame or a region."""

    run: bool
    region: Box | None = None  # None with run=True: the whole frame

    @property
    def whole_frame(self) -> bool:
        return self.run and self.region is None


SKIP = GateDecision(run=False)
WHOLE = GateDecision(run=True)


def square_region(moving: Box, width: int, height: int) -> Box | None:
    """The crop around ``moving`` (see the module docstring), or None for the whole frame."""
    x1, y1, x2, y2 = moving
    side = max(x2 - x1, y2 - y1) * (1 + 2 * REGION_MARGIN)
    side = min(max(side, MIN_REGION * min(width, height)), min(width, height))
    if side * side > MAX_REGION_SHARE * width * height:
        return None
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    size = round(side)
    left = round(min(max(cx - size / 2, 0), width - size))
    top = round(min(max(cy - size / 2, 0), height - size))
    return left, top, left + size, top + size


class MotionGate:
    def __init__(
        self,
        width: int,
        threshold: int,
        min_area: float,
        full_check_every_s: float,
        masks: Sequence[Sequence[Sequence[float]]] = (),
        zones: Sequence[Sequence[Sequence[float]]] = (),
        regions: bool = False,
    ) -> None:
        self.width = width
        self.threshold = threshold
        self.min_area = min_area
        self.full_check_every_s = full_check_every_s
        self.regions = regions
        self.masks = [np.array(m, np.float32) for m in masks]
        self.zones = [np.array(z, np.float32) for z in zones]
        self.background: npt.NDArray[np.float32] | None = None
        self.keep: npt.NDArray[np.uint8] | None = None
        self.last_full: datetime | None = None
        self.last_motion = 0.0  # share of the picture that moved, last frame
        self.last_moving: Box | None = None  # box of the moving pixels, frame pixels

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
        count = int(np.count_nonzero(moving))
        self.last_moving = None
        if count:
            x, y, w, h = cv2.boundingRect(np.asarray(moving, np.uint8))
            scale = image.shape[1] / self.width
            self.last_moving = (
                int(x * scale),
                int(y * scale),
                int(np.ceil((x + w) * scale)),
                int(np.ceil((y + h) * scale)),
            )
        return count / watched

    def should_detect(self, image: Frame, at: datetime) -> bool:
        """True if the detector must run on this frame (motion, or a full check is due)."""
        return self.decide(image, at).run

    def decide(self, image: Frame, at: datetime) -> GateDecision:
        """Skip this frame, run on a region around the motion, or run on the whole frame.

        The whole frame when a full check is due or the motion is spread
        wide; a full check is due ``full_check_every_s`` after the last
        whole-frame run.
        """
        self.last_motion = self.motion(image)
        due = (
            self.last_full is None
            or (at - self.last_full).total_seconds() >= self.full_check_every_s
        )
        if not due and self.last_motion <= self.min_area:
            return SKIP
        region = None
        if self.regions and not due and self.last_moving is not None:
            h, w = image.shape[:2]
            region = square_region(self.last_moving, w, h)
        if region is None:
            self.last_full = at
            return WHOLE
        return GateDecision(run=True, region=region)
