"""Fitting a frame into a network's fixed input, and mapping boxes back.

Two ways, both keeping the frame's pixels in the same channel order and type:

- **letterbox** (what ultralytics trains and predicts with): scale the frame
  by ``r = min(in_w / w, in_h / h)`` so the whole frame fits with its aspect
  ratio kept, resize to ``(round(w * r), round(h * r))``, and pad the two
  sides of the short dimension evenly with gray 114 (the odd pixel, if any,
  goes to the right / bottom, as in ultralytics' ``LetterBox``).
- **stretch**: resize to ``(in_w, in_h)`` regardless of aspect ratio.

Both return the resized image and a :class:`InputMapping`: input pixel
``(x, y)`` corresponds to frame pixel ``((x - pad_x) / scale_x,
(y - pad_y) / scale_y)``. The scales are measured on the resized content
(``new_w / w``, ``new_h / h``), so mapping back is exact up to interpolation,
not off by the rounding of ``r``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from detectors.base import Frame
from detectors.detections import FloatArray

PAD_VALUE = 114
ResizeMode = Literal["letterbox", "stretch"]


@dataclass(frozen=True)
class InputMapping:
    """How frame pixels were placed in the network input (see module docstring)."""

    frame_width: int
    frame_height: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_frame(self, xyxy: FloatArray) -> FloatArray:
        """Map boxes ``(N, 4)`` x1, y1, x2, y2 from input to frame pixels, clipped to the frame."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, [0, 2]] = (xyxy[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (xyxy[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.frame_width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.frame_height)
        return out

    def to_input(self, xyxy: FloatArray) -> FloatArray:
        """The inverse of :meth:`to_frame` (without clipping): frame to input pixels."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, [0, 2]] = xyxy[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = xyxy[:, [1, 3]] * self.scale_y + self.pad_y
        return out


def letterbox(frame: Frame, width: int, height: int) -> tuple[Frame, InputMapping]:
    """Fit ``frame`` (H, W, C) into ``width`` x ``height`` keeping its aspect ratio."""
    h, w = frame.shape[:2]
    r = min(width / w, height / h)
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    resized = (
        frame
        if (new_w, new_h) == (w, h)
        else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    pad_w, pad_h = width - new_w, height - new_h
    left, top = pad_w // 2, pad_h // 2
    image = np.full((height, width, frame.shape[2]), PAD_VALUE, np.uint8)
    image[top : top + new_h, left : left + new_w] = resized
    mapping = InputMapping(w, h, new_w / w, new_h / h, float(left), float(top))
    return image, mapping


def stretch(frame: Frame, width: int, height: int) -> tuple[Frame, InputMapping]:
    """Resize ``frame`` to exactly ``width`` x ``height``, ignoring its aspect ratio."""
    h, w = frame.shape[:2]
    image: Frame = frame
    if (w, h) != (width, height):
        image = np.asarray(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR))
    return image, InputMapping(w, h, width / w, height / h, 0.0, 0.0)


def fit(frame: Frame, width: int, height: int, mode: ResizeMode) -> tuple[Frame, InputMapping]:
    """:func:`letterbox` or :func:`stretch`, by ``mode``."""
    if mode == "letterbox":
        return letterbox(frame, width, height)
    return stretch(frame, width, height)
