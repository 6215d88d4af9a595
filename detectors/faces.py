"""Faces in a BGR frame, for blurring evidence (``edge/privacy.py``): BlazeFace on onnxruntime.

The model (``models/blazeface-back.onnx``, MediaPipe's BlazeFace "back camera"
detector; provenance, layout and licence in ``models/MODEL_CARD.md``) takes one
256x256 RGB picture, NHWC, scaled to [-1, 1], and answers for 896 SSD-style
anchors (16x16 cells x 2 at stride 16, then 8x8 cells x 6 at stride 32, each
anchor at its cell centre): a logit and 16 regression terms, ``dx, dy, w, h``
of the box and six ``(dx, dy)`` keypoints (right eye, left eye, nose, mouth,
right ear, left ear), all in input pixels relative to the anchor centre.
Scores are ``sigmoid(logit)``; boxes need NMS.

It finds faces from about 12 to 200 pixels across *in its 256x256 input*, so
a street camera's small faces are lost when a whole frame is shrunk to 256.
:class:`FaceDetector` therefore searches a pyramid: level 0 scales the frame
so that the smallest face wanted (``min_face``, a share of the frame height)
becomes :data:`MODEL_MIN_FACE` pixels and cuts it into overlapping 256x256
tiles; each next level divides the scale by :data:`LEVEL_STEP` (3: a ninth
of the tiles) until one tile holds the whole frame (taken early when the
next level would be under 1.5 times it). A face is wholly inside some tile
of a level while it is under :data:`OVERLAP` of a tile (64 model pixels), and
the next level's smallest face is 36 (at most 54) of this level's model
pixels, so every size from ``min_face`` up is covered. The boxes of every
tile and level are merged by NMS. Cost: one ~7 ms inference per tile
(one core); at the default ``min_face`` 0.015, 25 tiles on 768x576 (~170 ms),
39 on 1280x720 or 1920x1080 (~270 ms): ``python -m bench.privacy``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detectors.base import Frame
from detectors.detections import Detections, FloatArray, nms
from detectors.model_file import verified_model
from detectors.onnx_session import cpu_session

INPUT_SIZE = 256
MODEL_MIN_FACE = 12.0  # px in the model input: smaller faces score poorly
OVERLAP = 0.25  # of a tile: neighbouring tiles share this much
MAX_UPSCALE = 3.0  # level 0 never enlarges the frame more than this
LEVEL_STEP = 3.0  # each level shrinks the frame this much more
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
LABELS = ("face",)

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "blazeface-back.onnx"
DEFAULT_SHA256 = "907fa8054b8419509142a9d538e7580fbed1704c0f24a689ba898881f64e0e85"

# (stride, anchors per cell) of the two heads, in the order the anchors are numbered
_HEADS = ((16, 2), (32, 6))


def anchor_centres() -> FloatArray:
    """(896, 2) x, y of every anchor in input pixels: row-major cells, the anchors of a
    cell one after another, stride 16 first."""
    rows = []
    for stride, per_cell in _HEADS:
        cells = INPUT_SIZE // stride
        ys, xs = np.mgrid[0:cells, 0:cells].astype(np.float32)
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        rows.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(rows).astype(np.float32)


@dataclass(frozen=True)
class Raw:
    """One inference decoded, in model-input pixels, before thresholds and NMS."""

    scores: FloatArray  # (896,)
    xyxy: FloatArray  # (896, 4)
    keypoints: FloatArray  # (896, 6, 2)


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)
    return out


def tiles(length: int, tile: int) -> list[int]:
    """Start offsets of ``tile``-long windows covering ``length``, overlapping by
    :data:`OVERLAP` of a tile; one window (from 0) when the tile is not shorter."""
    if tile >= length:
        return [0]
    step = max(1, int(tile * (1.0 - OVERLAP)))
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


class FaceDetector:
    """BlazeFace (back camera model) over a pyramid of tiles; warmed up at construction.

    ``detect`` may be called from several threads at once (onnxruntime runs
    one session concurrently).
    """

    def __init__(
        self,
        model: Path = DEFAULT_MODEL,
        sha256: str = DEFAULT_SHA256,
        *,
        threads: int = 1,
        score_threshold: float = 0.45,
        nms_iou: float = 0.3,
        min_face: float = 0.015,
    ) -> None:
        if not 0 < min_face <= 1:
            raise ValueError(f"min_face is a share of the frame height, got {min_face}")
        self.session = cpu_session(verified_model(model, sha256), threads)
        self.input_name: str = self.session.get_inputs()[0].name
        outputs = [(o.name, tuple(int(d) for d in o.shape)) for o in self.session.get_outputs()]
        self._outputs = self._order_outputs(outputs)
        self._anchors = anchor_centres()
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.min_face = min_face
        self.runs = 0  # inferences so far (tiles of every level)
        self.detect(np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8))
        self.runs = 0

    @staticmethod
    def _order_outputs(outputs: list[tuple[str, tuple[int, ...]]]) -> list[str]:
        """Names of (logits 512, regressors 512, logits 384, regressors 384): the ONNX
        output names are leftovers of the TF.js graph, so they are told apart by shape."""
        order = []
        for n in (512, 384):
            for width in (1, 16):
                names = [name for name, shape in outputs if shape[-2:] == (n, width)]
                if len(names) != 1:
                    raise ValueError(f"model outputs {outputs} do not look like BlazeFace (back)")
                order.append(names[0])
        return order

    def infer(self, tile: Frame) -> Raw:
        """Run the model on one 256x256 BGR tile and decode every anchor."""
        rgb = cv2.cvtColor(tile, cv2.COLOR_BGR2RGB)
        tensor = (rgb.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0))[None]
        out = self.session.run(self._outputs, {self.input_name: tensor})
        self.runs += 1
        logits = np.concatenate([out[0][0, :, 0], out[2][0, :, 0]]).astype(np.float32)
        reg = np.concatenate([out[1][0], out[3][0]]).astype(np.float32)
        centres = self._anchors + reg[:, 0:2]
        half = reg[:, 2:4] / 2
        xyxy = np.concatenate([centres - half, centres + half], axis=1)
        keypoints = reg[:, 4:].reshape(-1, len(KEYPOINTS), 2) + self._anchors[:, None, :]
        return Raw(_sigmoid(logits), xyxy.astype(np.float32), keypoints.astype(np.float32))

    def levels(self, width: int, height: int) -> list[float]:
        """The scales searched for a ``width`` x ``height`` frame, largest first."""
        scale = min(MAX_UPSCALE, MODEL_MIN_FACE / (self.min_face * height))
        whole = INPUT_SIZE / max(width, height)
        scales = []
        while scale > whole * 1.5:  # a level barely larger than the last is not worth it
            scales.append(scale)
            scale /= LEVEL_STEP
        scales.append(whole)
        return scales

    def detect(self, frame: Frame) -> Detections:
        """Face boxes in ``frame``'s pixels (class ``face``), best first."""
        height, width = frame.shape[:2]
        boxes: list[FloatArray] = []
        scores: list[FloatArray] = []
        for scale in self.levels(width, height):
            for level_boxes, level_scores in self._level(frame, scale):
                boxes.append(level_boxes)
                scores.append(level_scores)
        if not boxes:
            return Detections.empty(LABELS)
        xyxy = np.concatenate(boxes).astype(np.float32)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        score = np.concatenate(scores).astype(np.float32)
        kept = nms(xyxy, score, np.zeros(len(score), np.int32), self.nms_iou)
        return Detections(
            xyxy=xyxy[kept],
            scores=score[kept],
            class_ids=np.zeros(len(kept), np.int32),
            labels=LABELS,
        )

    def _level(self, frame: Frame, scale: float) -> Iterator[tuple[FloatArray, FloatArray]]:
        """Boxes (in ``frame``'s pixels) and scores above the threshold, tile by tile, of
        ``frame`` resized by ``scale``."""
        height, width = frame.shape[:2]
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        scaled = frame
        if (w, h) != (width, height):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            scaled = np.asarray(cv2.resize(frame, (w, h), interpolation=interp), np.uint8)
        for y in tiles(h, INPUT_SIZE):
            for x in tiles(w, INPUT_SIZE):
                raw = self.infer(_square(scaled[y : y + INPUT_SIZE, x : x + INPUT_SIZE]))
                keep = raw.scores >= self.score_threshold
                if keep.any():
                    offset = np.array([x, y, x, y], np.float32)
                    yield (raw.xyxy[keep] + offset) / np.float32(scale), raw.scores[keep]

    def cost(self, width: int, height: int) -> int:
        """Inferences one ``detect`` of a ``width`` x ``height`` frame takes."""
        total = 0
        for scale in self.levels(width, height):
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            total += len(tiles(w, INPUT_SIZE)) * len(tiles(h, INPUT_SIZE))
        return total


def _square(tile: Frame) -> Frame:
    """``tile`` padded with black to the model's input size (at the right and bottom)."""
    h, w = tile.shape[:2]
    if (h, w) == (INPUT_SIZE, INPUT_SIZE):
        return tile
    padded = cv2.copyMakeBorder(
        tile, 0, INPUT_SIZE - h, 0, INPUT_SIZE - w, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    return np.asarray(padded, np.uint8)
