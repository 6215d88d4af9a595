"""NanoDet-m (COCO, 80 classes) on onnxruntime: the offline default detector.

The model file, its provenance and its layout are described in
``models/MODEL_CARD.md``. In short: input ``[1, 3, 416, 416]`` BGR float32,
the frame stretched (not letterboxed) to 416x416 and normalised per channel;
three output pairs, one per stride 8/16/32, of class scores ``[1, N, 80]``
(sigmoid applied) and box terms ``[1, N, 44]`` (4 sides x 11 distance bins,
softmax expectation times the stride, measured from the cell centre).

The shared options (threads, thresholds, NMS IoU, ``classes`` allow-list,
``class_thresholds``) come from :class:`detectors.options.DetectorOptions`;
class names are the 80 COCO names of :mod:`core.coco`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from core.coco import COCO_CLASSES
from detectors.base import DETECTORS, Detector, Frame
from detectors.detections import Detections, FloatArray
from detectors.model_file import verified_model
from detectors.onnx_session import cpu_session
from detectors.options import ClassFilter, DetectorOptions, build_class_filter, finish_detections

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_BINS = 11
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)

_BLOB_PARAMS = cv2.dnn.Image2BlobParams()
_BLOB_PARAMS.scalefactor = (*(1.0 / float(s) for s in STD_BGR), 0.0)
_BLOB_PARAMS.size = (INPUT_SIZE, INPUT_SIZE)
_BLOB_PARAMS.mean = (*(float(m) for m in MEAN_BGR), 0.0)
_BLOB_PARAMS.swapRB = False
_BLOB_PARAMS.ddepth = cv2.CV_32F

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "nanodet-m.onnx"
DEFAULT_SHA256 = "74e96027fc50189bf95fd0b7dadd9ee597c46aeb2b1d7da2ef127516d3549fdf"


class NanoDetConfig(DetectorOptions):
    """NanoDet-m (COCO) on onnxruntime: the bundled offline default."""

    type: Literal["nanodet"] = Field(default="nanodet", description="Detector plugin")
    model: str | None = Field(default=None, description="ONNX path; default: bundled NanoDet-m")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="sha256 of `model`; required with it, so a wrong file is refused",
    )

    @model_validator(mode="after")
    def _model_with_digest(self) -> NanoDetConfig:
        if (self.model is None) != (self.sha256 is None):
            raise ValueError("give both model and sha256, or neither (bundled NanoDet-m)")
        return self


@dataclass(frozen=True)
class _Head:
    """Output indices and cell centres of one stride."""

    stride: int
    scores_index: int
    boxes_index: int
    centres: FloatArray  # (N, 2) x, y in input pixels


def _centres(stride: int) -> FloatArray:
    cells = INPUT_SIZE // stride
    ys, xs = np.mgrid[0:cells, 0:cells].astype(np.float32)
    return np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)


def _match_heads(shapes: list[tuple[int, ...]]) -> list[_Head]:
    """Pair outputs by cell count: the ONNX output names carry no meaning."""
    heads = []
    for stride in STRIDES:
        n = (INPUT_SIZE // stride) ** 2
        scores = [i for i, s in enumerate(shapes) if s[-2:] == (n, len(COCO_CLASSES))]
        boxes = [i for i, s in enumerate(shapes) if s[-2:] == (n, 4 * REG_BINS)]
        if len(scores) != 1 or len(boxes) != 1:
            raise ValueError(
                f"model outputs {shapes} do not look like NanoDet-m at stride {stride}"
            )
        heads.append(_Head(stride, scores[0], boxes[0], _centres(stride)))
    return heads


class NanoDet:
    """NanoDet-m detector; warmed up at construction."""

    def __init__(
        self,
        model: Path = DEFAULT_MODEL,
        sha256: str = DEFAULT_SHA256,
        threads: int = 2,
        score_threshold: float = 0.3,
        nms_iou: float = 0.5,
        classes: Sequence[str] | None = None,
        class_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        self.session = cpu_session(verified_model(model, sha256), threads)
        self.input_name: str = self.session.get_inputs()[0].name
        shapes = [tuple(int(d) for d in o.shape) for o in self.session.get_outputs()]
        self._heads = _match_heads(shapes)
        self._filter = build_class_filter(
            COCO_CLASSES,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            classes=classes,
            class_thresholds=dict(class_thresholds or {}),
        )
        self.detect(np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8))

    @classmethod
    def from_config(cls, cfg: NanoDetConfig) -> NanoDet:
        model = (DEFAULT_MODEL, DEFAULT_SHA256)
        if cfg.model is not None and cfg.sha256 is not None:
            model = (Path(cfg.model), cfg.sha256)
        return cls(
            *model,
            threads=cfg.threads,
            score_threshold=cfg.score_threshold,
            nms_iou=cfg.nms_iou,
            classes=cfg.classes,
            class_thresholds=cfg.class_thresholds,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        return COCO_CLASSES

    @property
    def class_filter(self) -> ClassFilter:
        return self._filter

    def preprocess(self, frame: Frame) -> npt.NDArray[np.float32]:
        """Stretch to 416x416, normalise per channel, HWC -> NCHW: one OpenCV call.

        ``blobFromImageWithParams`` equals ``(resize(frame) - MEAN) / STD`` transposed
        (tested to float precision) at about a fifth of numpy's cost.
        """
        blob = cv2.dnn.blobFromImageWithParams(frame, _BLOB_PARAMS)
        return np.asarray(blob, dtype=np.float32)

    def infer(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run the network alone (used by the benchmark as the raw rate)."""
        outputs: list[npt.NDArray[np.float32]] = self.session.run(None, {self.input_name: tensor})
        return outputs

    def decode(self, outputs: list[npt.NDArray[np.float32]], width: int, height: int) -> Detections:
        all_boxes, all_scores, all_classes = [], [], []
        for head in self._heads:
            keep, best, best_score = self._filter.best(outputs[head.scores_index][0])
            if not len(keep):
                continue
            terms = outputs[head.boxes_index][0][keep].reshape(-1, 4, REG_BINS)
            terms = np.exp(terms - terms.max(axis=2, keepdims=True))
            terms /= terms.sum(axis=2, keepdims=True)
            dist = (terms * np.arange(REG_BINS, dtype=np.float32)).sum(axis=2) * head.stride
            c = head.centres[keep]
            all_boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
            all_scores.append(best_score)
            all_classes.append(best)
        if not all_boxes:
            return Detections.empty(COCO_CLASSES)
        xyxy = np.concatenate(all_boxes).astype(np.float32)
        xyxy *= np.array([width, height, width, height], np.float32) / INPUT_SIZE
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        scores_all = np.concatenate(all_scores).astype(np.float32)
        classes = np.concatenate(all_classes).astype(np.int32)
        return finish_detections(xyxy, scores_all, classes, self._filter)

    def detect(self, frame: Frame) -> Detections:
        height, width = frame.shape[:2]
        return self.decode(self.infer(self.preprocess(frame)), width, height)


@DETECTORS.register(NanoDetConfig)
def _build(cfg: NanoDetConfig) -> Detector:
    return NanoDet.from_config(cfg)
