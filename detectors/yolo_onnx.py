"""Ultralytics YOLOv8 / YOLO11 detection models exported to ONNX, on onnxruntime.

Config (``[detector] type = "yolo-onnx"``): the model file and its sha256
(required; a different file is refused), the model's own class names, and
optionally the input size and resize mode. Nothing is downloaded: the file
must be on disk.

``class_names`` is either a list of names in class-id order, or a string: the
path of a UTF-8 text file with one name per line, in class-id order (line 1
is class 0; surrounding whitespace is stripped; trailing blank lines are
ignored, a blank line before the last name is an error). The number of names
must match the model's output (``4 + num_classes`` channels), checked when
the detector starts, together with the names in ``classes`` and
``class_thresholds``.

Input (as ``yolo export format=onnx`` writes it): one tensor
``[1, 3, H, W]``, NCHW, **RGB**, float32 (float16 if exported with
``half=True``) scaled to 0..1, no mean/std. ``H`` x ``W`` is read from the
model when its shape is fixed (``input_size`` must then agree or be left
out); a model exported with ``dynamic=True`` needs ``input_size`` (a square
side, a multiple of 32). The frame is fitted with :mod:`detectors.letterbox`:
``letterbox`` (default, as ultralytics trains: aspect ratio kept, gray 114
padding) or ``stretch``; boxes are mapped back to frame pixels either way.

Output: one tensor ``[1, 4 + nc, N]`` (ultralytics' default), or its
transpose ``[1, N, 4 + nc]``. Per anchor: ``cx, cy, w, h`` of the box in
input pixels, then ``nc`` class scores with the sigmoid already applied (no
objectness term, classes independent). ``N`` = 8400 for a 640x640 input
(80x80 + 40x40 + 20x20 cells at strides 8/16/32). If both dimensions equal
``4 + nc`` the first layout is assumed. End-to-end (NMS-inside) exports,
e.g. ``nms=True`` or YOLO26's default ``[1, 300, 6]``, are refused at start.

Decoding: each anchor keeps its best class among those that pass the
configured filters (:meth:`detectors.options.ClassFilter.best`), boxes go to
``x1, y1, x2, y2`` in frame pixels, then :func:`detectors.options.finish_detections`
runs class-aware NMS.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import Field, field_validator

from detectors.base import DETECTORS, Frame
from detectors.detections import Detections, FloatArray
from detectors.letterbox import InputMapping, fit
from detectors.model_file import verified_model
from detectors.onnx_session import cpu_session
from detectors.options import ClassFilter, DetectorOptions, DetectorSetupError, finish_detections

log = logging.getLogger(__name__)

SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"


class YoloOnnxConfig(DetectorOptions):
    """An ultralytics YOLOv8/YOLO11 detection model exported to ONNX."""

    type: Literal["yolo-onnx"] = Field(description="Detector plugin")
    model: str = Field(description="Path of the .onnx file")
    sha256: str = Field(
        pattern=SHA256_PATTERN, description="sha256 of `model`: a different file is refused"
    )
    class_names: list[str] | str = Field(
        description="The model's class names in class-id order, or the path of a text file "
        "with one name per line"
    )
    input_size: int | None = Field(
        default=None,
        ge=32,
        le=4096,
        multiple_of=32,
        description="Square input side; default: the model's fixed input shape",
    )
    resize: Literal["letterbox", "stretch"] = Field(
        default="letterbox",
        description="letterbox: keep aspect ratio, pad gray; stretch: ignore aspect ratio",
    )

    @field_validator("class_names")
    @classmethod
    def _names_usable(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("give a list of names or the path of a names file")
            return v
        return list(check_class_names(v))


def check_class_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Reject an empty list, blank names and duplicates (a filter by name would be ambiguous)."""
    if not names:
        raise ValueError("the class list is empty")
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not name.strip():
            raise ValueError(f"class {i} has a blank name")
        if name in seen:
            raise ValueError(f"class name '{name}' appears twice")
        seen.add(name)
    return tuple(names)


def load_class_names(value: list[str] | str) -> tuple[str, ...]:
    """The class names of a config: the list itself, or read from the names file it names."""
    if not isinstance(value, str):
        return tuple(value)
    path = Path(value)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise DetectorSetupError(
            f"detector.class_names: cannot read names file {path}: {exc.strerror}"
        ) from None
    while lines and not lines[-1]:
        lines.pop()
    try:
        return check_class_names(lines)
    except ValueError as exc:
        raise DetectorSetupError(f"detector.class_names: names file {path}: {exc}") from None


def yolo_rows(output: npt.NDArray[np.floating], num_classes: int) -> FloatArray:
    """The raw output as rows ``(N, 4 + nc)``: cx, cy, w, h, class scores.

    Accepts ``[1, 4 + nc, N]`` (returned as a transposed view) or ``[1, N, 4 + nc]``.
    """
    channels = 4 + num_classes
    if output.ndim != 3 or output.shape[0] != 1:
        raise ValueError(f"expected a [1, {channels}, N] output, got shape {list(output.shape)}")
    if output.shape[1] == channels:
        rows: FloatArray = output[0].T
    elif output.shape[2] == channels:
        rows = output[0]
    else:
        raise ValueError(
            f"output shape {list(output.shape)} has no dimension of 4 + {num_classes} classes "
            f"= {channels}: the class list does not match the model"
        )
    return rows


def decode_yolo(
    output: npt.NDArray[np.floating], mapping: InputMapping, flt: ClassFilter
) -> Detections:
    """Decode one raw output (layouts: see :func:`yolo_rows`) into frame-pixel detections."""
    rows = yolo_rows(output, len(flt.labels))
    idx, class_ids, scores = flt.best(rows[:, 4:])
    if len(idx) == 0:
        return Detections.empty(flt.labels)
    cxcywh = rows[idx, :4].astype(np.float32)
    half = cxcywh[:, 2:] / 2
    xyxy = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)
    return finish_detections(mapping.to_frame(xyxy), scores, class_ids, flt)


def _static_hw(shape: list[object]) -> tuple[int, int] | None:
    """``(H, W)`` of an NCHW input shape when both are fixed, else ``None``."""
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    return None


def _metadata(session: ort.InferenceSession) -> dict[str, str]:
    meta: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
    return meta


def _literal(text: str | None) -> object:
    """A Python literal ultralytics wrote into the metadata (a dict repr), or ``None``."""
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _check_metadata(meta: dict[str, str], labels: tuple[str, ...], path: Path) -> None:
    """Use what ultralytics writes into the file (if anything) to catch a wrong config early.

    Keys read: ``end2end`` ("True"/"False"), ``args`` (a dict repr with ``nms``),
    ``task`` and ``names`` (a dict repr ``{0: 'person', ...}``). Absent keys
    (another exporter) are fine.
    """
    args = _literal(meta.get("args"))
    nms_inside = isinstance(args, dict) and bool(args.get("nms"))
    if meta.get("end2end", "").lower() == "true" or nms_inside:
        raise DetectorSetupError(
            f"{path} is an end-to-end (NMS inside) export; yolo-onnx decodes the raw "
            "[1, 4+nc, N] head: export it with nms=False (and end2end=False for YOLO26)"
        )
    if meta.get("task", "detect") != "detect":
        raise DetectorSetupError(f"{path} is a '{meta['task']}' model, not a detection model")
    names = _literal(meta.get("names"))
    if not isinstance(names, dict):
        return
    if len(names) != len(labels):
        raise DetectorSetupError(
            f"detector.class_names: {len(labels)} names given, but {path} has {len(names)} classes"
        )
    embedded = tuple(str(names.get(i, "")) for i in range(len(names)))
    placeholders = tuple(str(i) for i in range(len(names)))
    if embedded not in (labels, placeholders):
        diff = next(i for i, (a, b) in enumerate(zip(embedded, labels, strict=True)) if a != b)
        log.warning(
            "detector.class_names differ from the names stored in %s (class %d: '%s' vs '%s')",
            path,
            diff,
            labels[diff],
            embedded[diff],
        )


@DETECTORS.register(YoloOnnxConfig)
class YoloOnnx:
    """A YOLOv8/YOLO11 ONNX detector; checked and warmed up at construction."""

    def __init__(self, cfg: YoloOnnxConfig) -> None:
        path = verified_model(Path(cfg.model), cfg.sha256)
        labels = load_class_names(cfg.class_names)
        self._filter = cfg.class_filter(labels)
        self.resize = cfg.resize
        self.session = cpu_session(path, cfg.threads)
        _check_metadata(_metadata(self.session), labels, path)
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        self._half = inp.type == "tensor(float16)"
        if len(inp.shape) != 4 or (isinstance(inp.shape[1], int) and inp.shape[1] != 3):
            raise DetectorSetupError(f"{path}: input shape {inp.shape} is not [1, 3, H, W]")
        static = _static_hw(list(inp.shape))
        if static is not None:
            if cfg.input_size is not None and (cfg.input_size, cfg.input_size) != static:
                raise DetectorSetupError(
                    f"detector.input_size: {cfg.input_size} does not fit {path}, whose input "
                    f"is fixed at {static[1]}x{static[0]} (leave input_size out)"
                )
            self.input_height, self.input_width = static
        elif cfg.input_size is None:
            raise DetectorSetupError(
                f"detector.input_size: {path} has a dynamic input shape {inp.shape}; "
                "set input_size (e.g. 640)"
            )
        else:
            self.input_height = self.input_width = cfg.input_size
        out_shape = list(self.session.get_outputs()[0].shape)
        channels = 4 + len(labels)
        fixed = all(isinstance(d, int) for d in out_shape[1:])
        if len(out_shape) != 3 or (fixed and channels not in out_shape[1:]):
            raise DetectorSetupError(
                f"detector.class_names: {len(labels)} names need a [1, {channels}, N] output, "
                f"but {path} outputs {out_shape}"
            )
        try:
            self.detect(np.zeros((self.input_height, self.input_width, 3), np.uint8))
        except ValueError as exc:
            raise DetectorSetupError(f"{path}: {exc}") from None

    @property
    def labels(self) -> tuple[str, ...]:
        return self._filter.labels

    @property
    def class_filter(self) -> ClassFilter:
        return self._filter

    def preprocess(self, frame: Frame) -> tuple[npt.NDArray[np.floating], InputMapping]:
        """BGR frame -> ``[1, 3, H, W]`` RGB 0..1 tensor, and where the frame went in it."""
        image, mapping = fit(frame, self.input_width, self.input_height, self.resize)
        chw = image[:, :, ::-1].transpose(2, 0, 1)[None]
        tensor = np.ascontiguousarray(chw, dtype=np.float32)
        tensor *= np.float32(1 / 255)
        return (tensor.astype(np.float16) if self._half else tensor), mapping

    def infer(self, tensor: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """Run the network alone (the raw rate of a benchmark); returns the first output."""
        outputs: list[npt.NDArray[np.floating]] = self.session.run(None, {self.input_name: tensor})
        return outputs[0]

    def decode(self, output: npt.NDArray[np.floating], mapping: InputMapping) -> Detections:
        return decode_yolo(output, mapping, self._filter)

    def detect(self, frame: Frame) -> Detections:
        tensor, mapping = self.preprocess(frame)
        return self.decode(self.infer(tensor), mapping)
