"""The shared detector options, the filter that applies them, and the plugin registry."""

from __future__ import annotations

import hashlib
import sys
import typing
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from detectors.base import DETECTORS
from detectors.nanodet import NanoDet, NanoDetConfig
from detectors.options import (
    MAX_DETECTIONS,
    DetectorOptions,
    DetectorSetupError,
    UnknownClassError,
    build_class_filter,
    finish_detections,
)
from detectors.registry import DetectorConfig, build_detector
from detectors.ultralytics_pt import (
    INSTALL_HINT,
    UltralyticsConfig,
    UltralyticsDetector,
    result_to_detections,
)
from detectors.yolo_onnx import YoloOnnxConfig

LABELS = ("person", "car", "bus", "truck")


def _flt(**kw: typing.Any) -> typing.Any:
    return build_class_filter(LABELS, **{"score_threshold": 0.5, "nms_iou": 0.5, **kw})


def _boxes(n: int) -> np.ndarray:
    """``n`` disjoint 10x10 boxes in a row."""
    x = np.arange(n, dtype=np.float32) * 20
    return np.stack([x, np.zeros(n), x + 10, np.full(n, 10)], axis=1).astype(np.float32)


# --- resolving options against a model's classes ------------------------------------------


def test_thresholds_per_class() -> None:
    flt = _flt(classes=["person", "car", "truck"], class_thresholds={"car": 0.2, "truck": 0.9})
    np.testing.assert_allclose(flt.thresholds, [0.5, 0.2, np.inf, 0.9])
    assert flt.min_score == pytest.approx(0.2)
    assert flt.kept_class_ids == (0, 1, 3)
    assert _flt().kept_class_ids is None
    assert _flt().min_score == pytest.approx(0.5)


def test_unknown_names_are_named() -> None:
    with pytest.raises(UnknownClassError, match=r"detector.classes: unknown class 'buss'.*'bus'"):
        _flt(classes=["person", "buss"])
    with pytest.raises(UnknownClassError, match=r"class_thresholds: unknown class 'tram'"):
        _flt(class_thresholds={"tram": 0.3})
    assert issubclass(UnknownClassError, DetectorSetupError)


def test_options_validate_their_own_consistency() -> None:
    with pytest.raises(ValidationError, match="'car' is listed twice"):
        DetectorOptions(classes=["car", "car"])
    with pytest.raises(ValidationError, match="'bus' is not in classes"):
        DetectorOptions(classes=["car"], class_thresholds={"bus": 0.4})
    with pytest.raises(ValidationError, match="less than 1"):
        DetectorOptions(class_thresholds={"bus": 1.0})
    with pytest.raises(ValidationError, match="at least 1 item"):
        DetectorOptions(classes=[])
    with pytest.raises(ValidationError, match="Extra inputs"):
        DetectorOptions.model_validate({"clases": ["car"]})
    opts = DetectorOptions(classes=["car"], class_thresholds={"car": 0.2})
    assert opts.class_filter(LABELS).kept_class_ids == (1,)


# --- the dense decoder helper ----------------------------------------------------------------


def test_best_picks_the_best_passing_class_per_row() -> None:
    flt = _flt(classes=["person", "car", "truck"], class_thresholds={"car": 0.2})
    scores = np.array(
        [
            [0.9, 0.1, 0.0, 0.0],  # person
            [0.1, 0.3, 0.0, 0.0],  # car at its own 0.2
            [0.6, 0.0, 0.95, 0.0],  # bus excluded: person
            [0.4, 0.1, 0.99, 0.45],  # nothing passes
            [0.55, 0.0, 0.0, 0.7],  # truck beats person
        ],
        np.float32,
    )
    rows, cls, best = flt.best(scores)
    assert rows.tolist() == [0, 1, 2, 4]
    assert [LABELS[c] for c in cls] == ["person", "car", "person", "truck"]
    np.testing.assert_allclose(best, [0.9, 0.3, 0.6, 0.7])
    with pytest.raises(ValueError, match="does not fit 4 classes"):
        flt.best(np.zeros((3, 5), np.float32))
    rows, cls, best = flt.best(np.zeros((3, 4), np.float32))
    assert len(rows) == len(cls) == len(best) == 0


# --- finish_detections: the one function every plugin ends with ------------------------------


def test_finish_applies_allow_list_and_thresholds() -> None:
    flt = _flt(classes=["person", "car"], class_thresholds={"car": 0.3})
    dets = finish_detections(
        _boxes(5),
        np.array([0.6, 0.4, 0.35, 0.25, 0.99], np.float32),
        np.array([0, 0, 1, 1, 2], np.int32),
        flt,
    )
    assert [dets.label(i) for i in range(len(dets))] == ["person", "car"]
    np.testing.assert_allclose(dets.scores, [0.6, 0.35])
    np.testing.assert_array_equal(dets.xyxy, _boxes(5)[[0, 2]])
    assert dets.labels == LABELS


def test_finish_runs_class_aware_nms_best_first() -> None:
    xyxy = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], np.float32)
    dets = finish_detections(
        xyxy,
        np.array([0.7, 0.9, 0.8, 0.6], np.float32),
        np.array([1, 1, 3, 1], np.int32),
        _flt(nms_iou=0.5),
    )
    # The two overlapping cars keep the better one; the truck on top of them stays.
    assert [dets.label(i) for i in range(len(dets))] == ["car", "truck", "car"]
    np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.6])


def test_finish_caps_and_handles_empty_input() -> None:
    n = MAX_DETECTIONS + 50
    dets = finish_detections(
        _boxes(n), np.linspace(0.99, 0.6, n).astype(np.float32), np.zeros(n, np.int32), _flt()
    )
    assert len(dets) == MAX_DETECTIONS and dets.scores[0] == pytest.approx(0.99)
    empty = finish_detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), _flt()
    )
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4)
    with pytest.raises(ValueError, match="class id"):
        finish_detections(_boxes(1), np.ones(1, np.float32), np.array([4], np.int32), _flt())
    with pytest.raises(ValueError, match="same length"):
        finish_detections(_boxes(2), np.ones(1, np.float32), np.zeros(1, np.int32), _flt())


# --- the registry ------------------------------------------------------------------------------

ADAPTER: TypeAdapter[typing.Any] = TypeAdapter(DetectorConfig)
YOLO = {"type": "yolo-onnx", "model": "m.onnx", "sha256": "a" * 64, "class_names": ["a"]}


def test_config_is_chosen_by_type() -> None:
    assert type(ADAPTER.validate_python({})) is NanoDetConfig  # no type: the default
    assert type(ADAPTER.validate_python({"type": "nanodet"})) is NanoDetConfig
    assert type(ADAPTER.validate_python(YOLO)) is YoloOnnxConfig
    pt = {**YOLO, "type": "ultralytics", "model": "m.pt"}
    del pt["class_names"]
    assert type(ADAPTER.validate_python(pt)) is UltralyticsConfig
    with pytest.raises(ValidationError, match="nanodet \\(default\\), ultralytics, yolo-onnx"):
        ADAPTER.validate_python({"type": "yolo"})
    with pytest.raises(ValidationError, match="class_names"):
        ADAPTER.validate_python({**YOLO, "class_names": None})
    with pytest.raises(ValidationError, match=r"must be a \.pt file"):
        ADAPTER.validate_python({**pt, "model": "m.onnx"})


def test_the_union_is_the_registered_plugins() -> None:
    members = {typing.get_args(a)[0] for a in typing.get_args(typing.get_args(DetectorConfig)[0])}
    assert members == {NanoDetConfig, YoloOnnxConfig, UltralyticsConfig}
    assert set(DETECTORS.configs()) == members
    assert DETECTORS.tags == {"nanodet", "yolo-onnx", "ultralytics"}


def test_build_detector_applies_the_shared_options(bus_jpg: Path) -> None:
    cfg = ADAPTER.validate_python({"score_threshold": 0.35, "classes": ["bus"]})
    detector = build_detector(cfg)
    assert isinstance(detector, NanoDet)
    image = cv2.imread(str(bus_jpg))
    assert image is not None
    dets = detector.detect(np.asarray(image, np.uint8))
    assert len(dets) >= 1 and {dets.label(i) for i in range(len(dets))} == {"bus"}
    with pytest.raises(UnknownClassError, match="'buss'"):
        build_detector(NanoDetConfig(classes=["buss"]))
    with pytest.raises(TypeError, match="no detector registered"):
        build_detector(DetectorOptions())


# --- the ultralytics plugin, without ultralytics -------------------------------------------------


def test_ultralytics_missing_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"not really a checkpoint")
    cfg = UltralyticsConfig(
        type="ultralytics", model=str(model), sha256=hashlib.sha256(model.read_bytes()).hexdigest()
    )
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # as if not installed
    monkeypatch.setenv("YOLO_OFFLINE", "true")
    monkeypatch.setenv("YOLO_AUTOINSTALL", "false")
    with pytest.raises(DetectorSetupError, match=INSTALL_HINT.replace("[", "\\[")):
        UltralyticsDetector(cfg)
    assert INSTALL_HINT == "pip install 'streetwatch[ultralytics]'"


def test_ultralytics_results_become_detections() -> None:
    boxes = SimpleNamespace(
        xyxy=np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32),
        conf=np.array([0.9, 0.2, 0.7], np.float32),
        cls=np.array([0.0, 1.0, 2.0], np.float32),
    )
    dets = result_to_detections(SimpleNamespace(boxes=boxes), _flt(classes=["person", "car"]))
    assert [dets.label(i) for i in range(len(dets))] == ["person"]
    assert dets.xyxy.dtype == np.float32 and dets.class_ids.dtype == np.int32
    assert len(result_to_detections(SimpleNamespace(boxes=None), _flt())) == 0


def _greedy_nms(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """The textbook algorithm, as an oracle for detectors.detections.nms."""
    from detectors.detections import box_iou

    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        same = [k for k in keep if classes[k] == classes[i]]
        if not same or box_iou(xyxy[i : i + 1], xyxy[same]).max() <= iou:
            keep.append(int(i))
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_greedy_algorithm(seed: int) -> None:
    from detectors.detections import nms

    rng = np.random.default_rng(seed)
    n = 80
    xy = rng.uniform(0, 600, (n, 2)).astype(np.float32)
    xyxy = np.concatenate([xy, xy + rng.uniform(10, 150, (n, 2)).astype(np.float32)], axis=1)
    scores = rng.uniform(0.3, 0.95, n).astype(np.float32)
    classes = rng.integers(0, 4, n).astype(np.int32)
    assert nms(xyxy, scores, classes, 0.5).tolist() == _greedy_nms(xyxy, scores, classes, 0.5)
