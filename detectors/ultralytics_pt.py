"""PyTorch (``.pt``) detection models run by the ``ultralytics`` package.

An optional plugin: ``ultralytics`` (and torch, torchvision) are not
dependencies of streetwatch. Install them with the extra::

    pip install 'streetwatch[ultralytics]'

The package is imported inside :class:`UltralyticsDetector`'s constructor,
so importing this module, validating a config or using another plugin needs
none of it. Before that import, ``YOLO_OFFLINE`` and ``YOLO_AUTOINSTALL=false``
are set (unless already set) so that ultralytics neither probes the network
nor pip-installs anything at run time; the model must be a local file and
is checked against its sha256 first.

Whatever ultralytics can predict with for ``task="detect"`` (YOLOv8, YOLO11,
YOLO26, RT-DETR ...) works: ultralytics does the pre-processing (letterbox),
inference and its own NMS, and each result is converted at once into
:class:`~detectors.detections.Detections` (boxes ``x1, y1, x2, y2`` in frame
pixels, scores, class ids, labels = the model's ``names``); no ultralytics or
torch object leaves this module. The shared options are applied by
:func:`detectors.options.finish_detections` like for every plugin: the
allow-list and the lowest threshold are also passed to ultralytics
(``classes``, ``conf``) so it does less work.

One ultralytics model is not safe to call from several threads at once, so
:meth:`UltralyticsDetector.detect` holds a lock: cameras sharing the detector
take turns. ``threads`` sets ``torch.set_num_threads`` (process-wide).
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from detectors.base import DETECTORS, Frame
from detectors.detections import Detections
from detectors.model_file import verified_model
from detectors.options import (
    MAX_DETECTIONS,
    ClassFilter,
    DetectorOptions,
    DetectorSetupError,
    finish_detections,
)
from detectors.yolo_onnx import SHA256_PATTERN

INSTALL_HINT = "pip install 'streetwatch[ultralytics]'"


class UltralyticsConfig(DetectorOptions):
    """A PyTorch .pt detection model run by ultralytics (optional extra `ultralytics`)."""

    type: Literal["ultralytics"] = Field(description="Detector plugin")
    model: str = Field(description="Path of the .pt file (never downloaded)")
    sha256: str = Field(
        pattern=SHA256_PATTERN, description="sha256 of `model`: a different file is refused"
    )
    input_size: int | None = Field(
        default=None,
        ge=32,
        le=4096,
        multiple_of=32,
        description="Inference size (ultralytics imgsz); default: the model's own",
    )
    device: str = Field(
        default="cpu",
        pattern=r"^(cpu|cuda(:\d+)?|mps)$",
        description="torch device: cpu, cuda, cuda:N or mps",
    )

    @field_validator("model")
    @classmethod
    def _is_pt(cls, v: str) -> str:
        if not v.endswith(".pt"):
            raise ValueError('must be a .pt file (use type = "yolo-onnx" for .onnx)')
        return v


def _import_ultralytics() -> Any:
    os.environ.setdefault("YOLO_OFFLINE", "true")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    try:
        return importlib.import_module("ultralytics")
    except ImportError as exc:
        raise DetectorSetupError(
            f"the 'ultralytics' detector needs the optional ultralytics package "
            f"({type(exc).__name__}: {exc}): {INSTALL_HINT}"
        ) from exc


def _numpy(value: Any) -> npt.NDArray[Any]:
    """A torch tensor (on any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def result_to_detections(result: Any, flt: ClassFilter) -> Detections:
    """One ultralytics ``Results`` (detection) as :class:`Detections`, options applied.

    Reads ``result.boxes.xyxy`` (N, 4) frame pixels, ``.conf`` (N,) and
    ``.cls`` (N,) (class ids as floats), whatever device they are on.
    """
    boxes = result.boxes
    if boxes is None:
        return Detections.empty(flt.labels)
    xyxy = _numpy(boxes.xyxy).astype(np.float32).reshape(-1, 4)
    scores = _numpy(boxes.conf).astype(np.float32).reshape(-1)
    class_ids = np.rint(_numpy(boxes.cls)).astype(np.int32).reshape(-1)
    return finish_detections(xyxy, scores, class_ids, flt)


@DETECTORS.register(UltralyticsConfig)
class UltralyticsDetector:
    """A ``.pt`` model through ultralytics; checked and warmed up at construction."""

    def __init__(self, cfg: UltralyticsConfig) -> None:
        path = verified_model(Path(cfg.model), cfg.sha256)
        ultralytics = _import_ultralytics()
        torch = importlib.import_module("torch")
        torch.set_num_threads(cfg.threads)
        self._model = ultralytics.YOLO(str(path), task="detect")
        if self._model.task != "detect":
            raise DetectorSetupError(f"{path} is a '{self._model.task}' model, not detection")
        names = self._model.names
        labels = tuple(str(names[i]) for i in range(len(names)))
        self._filter = cfg.class_filter(labels)
        kept = self._filter.kept_class_ids
        self._predict_args: dict[str, Any] = {
            "conf": self._filter.min_score,
            "iou": cfg.nms_iou,
            "classes": list(kept) if kept is not None else None,
            "device": cfg.device,
            "max_det": MAX_DETECTIONS,
            "verbose": False,
        }
        if cfg.input_size is not None:
            self._predict_args["imgsz"] = cfg.input_size
        self._lock = threading.Lock()
        size = cfg.input_size or 640
        try:
            self.detect(np.zeros((size, size, 3), np.uint8))
        except RuntimeError as exc:
            if "torchvision" in str(exc):
                raise DetectorSetupError(
                    f"ultralytics cannot run: torch and torchvision do not match ({exc}); "
                    f"install the pair pinned in the extra: {INSTALL_HINT}"
                ) from exc
            raise

    @property
    def labels(self) -> tuple[str, ...]:
        return self._filter.labels

    def detect(self, frame: Frame) -> Detections:
        with self._lock:
            results = self._model.predict(frame, **self._predict_args)
            return result_to_detections(results[0], self._filter)
