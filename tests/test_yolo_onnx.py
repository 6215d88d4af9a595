"""The yolo-onnx plugin: a real YOLOv8n ONNX graph, and its decoding on known tensors.

The model, ``.cache/models/yolov8n-random.onnx``, is YOLOv8n with random
(seeded) weights made by ``scripts/export_yolo_test_model.sh``; its digest
and class list are in the side files that script writes. Random weights
detect nothing real, so box geometry is checked on synthetic output tensors
``[1, 4 + nc, N]`` with known boxes, decoded with the mapping the detector's
own pre-processing returns.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.coco import COCO_CLASSES
from detectors.letterbox import PAD_VALUE, letterbox, stretch
from detectors.model_file import ModelFileError
from detectors.options import (
    MAX_DETECTIONS,
    DetectorSetupError,
    UnknownClassError,
    build_class_filter,
)
from detectors.yolo_onnx import (
    YoloOnnx,
    YoloOnnxConfig,
    _check_metadata,
    decode_yolo,
    load_class_names,
    yolo_rows,
)
from tests.support.paths import ROOT

MODEL = ROOT / ".cache" / "models" / "yolov8n-random.onnx"
HOW = "run scripts/export_yolo_test_model.sh (it makes the YOLO test model offline)"


@pytest.fixture(scope="module")
def model_file() -> tuple[Path, str, Path]:
    """The test model, its sha256 (from the side file) and its names file."""
    side, names = MODEL.with_suffix(".onnx.sha256"), MODEL.with_suffix(".names")
    for path in (MODEL, side, names):
        if not path.is_file():
            pytest.fail(f"{path} is missing: {HOW}")
    return MODEL, side.read_text().split()[0], names


def _config(model_file: tuple[Path, str, Path], **overrides: object) -> YoloOnnxConfig:
    path, sha, names = model_file
    data: dict[str, object] = {
        "type": "yolo-onnx",
        "model": str(path),
        "sha256": sha,
        "class_names": str(names),
        "threads": 2,
    }
    data.update(overrides)
    return YoloOnnxConfig.model_validate(data)


@pytest.fixture(scope="module")
def detector(model_file: tuple[Path, str, Path]) -> YoloOnnx:
    return YoloOnnx(_config(model_file, score_threshold=0.5))


@pytest.fixture(scope="module")
def stretching(model_file: tuple[Path, str, Path]) -> YoloOnnx:
    return YoloOnnx(_config(model_file, score_threshold=0.5, resize="stretch"))


def _output(boxes: list[tuple[float, float, float, float, int, float]], nc: int = 80) -> np.ndarray:
    """A ``[1, 4 + nc, 8400]`` output holding ``(x1, y1, x2, y2, class, score)`` in input px."""
    out = np.zeros((1, 4 + nc, 8400), np.float32)
    for i, (x1, y1, x2, y2, cls, score) in enumerate(boxes):
        out[0, :4, 100 + 37 * i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + cls, 100 + 37 * i] = score
    return out


# --- the real graph -------------------------------------------------------------------


def test_graph_loads_with_the_digest_from_the_side_file(detector: YoloOnnx) -> None:
    assert (detector.input_width, detector.input_height) == (640, 640)  # read from the model
    assert detector.labels == COCO_CLASSES  # from the names file
    assert [o.shape for o in detector.session.get_outputs()] == [[1, 84, 8400]]
    frame = np.zeros((480, 640, 3), np.uint8)
    assert detector.infer(detector.preprocess(frame)[0]).shape == (1, 84, 8400)


def test_random_weights_give_well_formed_detections(model_file: tuple[Path, str, Path]) -> None:
    # Random weights score every class near its initial bias (~1e-5..2e-4): a tiny
    # threshold lets a few hundred candidates through.
    det = YoloOnnx(_config(model_file, score_threshold=0.0001))
    frame = np.random.default_rng(0).integers(0, 256, (480, 700, 3), dtype=np.uint8)
    dets = det.detect(frame)
    assert 0 < len(dets) <= MAX_DETECTIONS
    assert dets.xyxy.shape == (len(dets), 4) and dets.xyxy.dtype == np.float32
    assert dets.scores.shape == dets.class_ids.shape == (len(dets),)
    assert (dets.scores >= 0.0001).all() and (np.diff(dets.scores) <= 0).all()
    assert (dets.xyxy[:, [0, 1]] <= dets.xyxy[:, [2, 3]]).all()
    assert (dets.xyxy >= 0).all() and (dets.xyxy[:, [0, 2]] <= 700).all()
    assert (dets.xyxy[:, [1, 3]] <= 480).all()
    assert dets.labels == COCO_CLASSES
    assert all(r.label in COCO_CLASSES for r in dets.to_records())
    assert len(det.detect(frame)) == len(dets)  # deterministic


def test_a_wrong_sha256_is_refused(model_file: tuple[Path, str, Path]) -> None:
    with pytest.raises(ModelFileError, match="sha256"):
        YoloOnnx(_config(model_file, sha256="0" * 64))


def test_a_changed_file_is_refused(model_file: tuple[Path, str, Path], tmp_path: Path) -> None:
    tampered = tmp_path / "m.onnx"
    shutil.copyfile(model_file[0], tampered)
    with tampered.open("r+b") as f:
        f.seek(5000)
        f.write(b"\x01\x02\x03")
    with pytest.raises(ModelFileError, match="sha256"):
        YoloOnnx(_config(model_file, model=str(tampered)))


def test_unknown_class_names_are_named_at_start(model_file: tuple[Path, str, Path]) -> None:
    cfg = _config(model_file, classes=["person", "persn"])
    with pytest.raises(UnknownClassError, match=r"'persn'.*did you mean 'person'"):
        YoloOnnx(cfg)
    cfg = _config(model_file, class_thresholds={"lorry": 0.4})
    with pytest.raises(UnknownClassError, match=r"class_thresholds: unknown class 'lorry'"):
        YoloOnnx(cfg)


def test_class_list_must_match_the_output(model_file: tuple[Path, str, Path]) -> None:
    with pytest.raises(DetectorSetupError, match=r"3 names given, but .* has 80 classes"):
        YoloOnnx(_config(model_file, class_names=["a", "b", "c"]))


def test_input_size_must_match_a_fixed_input(model_file: tuple[Path, str, Path]) -> None:
    with pytest.raises(DetectorSetupError, match=r"input_size: 320 .* fixed at 640x640"):
        YoloOnnx(_config(model_file, input_size=320))
    assert YoloOnnx(_config(model_file, input_size=640)).input_width == 640


def test_ultralytics_metadata_catches_wrong_exports(caplog: pytest.LogCaptureFixture) -> None:
    path, labels = Path("m.onnx"), ("a", "b")
    _check_metadata({}, labels, path)  # another exporter: nothing to check
    _check_metadata({"names": "{0: '0', 1: '1'}", "end2end": "False"}, labels, path)
    with pytest.raises(DetectorSetupError, match="end-to-end"):
        _check_metadata({"end2end": "True"}, labels, path)
    with pytest.raises(DetectorSetupError, match="end-to-end"):
        _check_metadata({"args": "{'nms': True, 'batch': 1}"}, labels, path)
    with pytest.raises(DetectorSetupError, match="'segment' model"):
        _check_metadata({"task": "segment"}, labels, path)
    with pytest.raises(DetectorSetupError, match=r"2 names given, but m\.onnx has 3 classes"):
        _check_metadata({"names": "{0: 'a', 1: 'b', 2: 'c'}"}, labels, path)
    _check_metadata({"names": "{0: 'a', 1: 'x'}"}, labels, path)
    assert "class 1: 'b' vs 'x'" in caplog.text


# --- decoding -------------------------------------------------------------------------


def test_decodes_both_layouts_to_the_same_boxes() -> None:
    flt = build_class_filter(COCO_CLASSES, score_threshold=0.5, nms_iou=0.5)
    _, mapping = stretch(np.zeros((640, 640, 3), np.uint8), 640, 640)
    out = _output([(10, 20, 110, 220, 2, 0.9), (300, 300, 400, 420, 0, 0.7)])
    assert yolo_rows(out, 80).shape == (8400, 84)
    a = decode_yolo(out, mapping, flt)
    b = decode_yolo(np.ascontiguousarray(out.transpose(0, 2, 1)), mapping, flt)
    np.testing.assert_allclose(a.xyxy, [[10, 20, 110, 220], [300, 300, 400, 420]], atol=1e-4)
    assert [a.label(0), a.label(1)] == ["car", "person"]
    np.testing.assert_allclose(a.scores, [0.9, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_an_output_that_does_not_fit_the_class_list_is_an_error() -> None:
    flt = build_class_filter(("a", "b", "c"), score_threshold=0.5, nms_iou=0.5)
    _, mapping = stretch(np.zeros((640, 640, 3), np.uint8), 640, 640)
    with pytest.raises(ValueError, match="4 \\+ 3 classes = 7"):
        decode_yolo(np.zeros((1, 84, 8400), np.float32), mapping, flt)
    with pytest.raises(ValueError, match="expected a"):
        decode_yolo(np.zeros((84, 8400), np.float32), mapping, flt)


# Frame boxes and the same boxes in 640x640 input pixels, worked out by hand.
# Landscape 1280x720, letterbox: r = 0.5, content 640x360, 140 px bands top and bottom.
# Portrait 480x800, letterbox: r = 0.8, content 384x640, 128 px bands left and right.
# Stretch: x scaled by 640 / W, y by 640 / H.
CASES = [
    ("letterbox", (720, 1280), (100, 200, 300, 400), (50, 240, 150, 340)),
    ("letterbox", (800, 480), (40, 100, 240, 700), (160, 80, 320, 560)),
    ("stretch", (720, 1280), (100, 180, 300, 360), (50, 160, 150, 320)),
    ("stretch", (800, 480), (30, 100, 240, 700), (40, 80, 320, 560)),
]


@pytest.mark.parametrize(("mode", "hw", "frame_box", "input_box"), CASES)
def test_boxes_map_back_to_the_frame(
    detector: YoloOnnx,
    stretching: YoloOnnx,
    mode: str,
    hw: tuple[int, int],
    frame_box: tuple[int, int, int, int],
    input_box: tuple[int, int, int, int],
) -> None:
    det = detector if mode == "letterbox" else stretching
    _, mapping = det.preprocess(np.zeros((*hw, 3), np.uint8))
    dets = det.decode(_output([(*input_box, 7, 0.8)]), mapping)
    assert len(dets) == 1 and dets.label(0) == "truck"
    np.testing.assert_allclose(dets.xyxy[0], frame_box, atol=1e-3)
    np.testing.assert_allclose(mapping.to_input(dets.xyxy)[0], input_box, atol=1e-3)


def test_boxes_reaching_into_the_padding_are_clipped_to_the_frame(detector: YoloOnnx) -> None:
    _, mapping = detector.preprocess(np.zeros((720, 1280, 3), np.uint8))
    dets = detector.decode(_output([(-20, 100, 200, 600, 0, 0.9)]), mapping)
    np.testing.assert_allclose(dets.xyxy[0], [0, 0, 400, 720], atol=1e-3)


def test_letterbox_pads_gray_like_ultralytics() -> None:
    frame = np.zeros((427, 640, 3), np.uint8)  # odd padding: 213 rows
    image, mapping = letterbox(frame, 640, 640)
    assert image.shape == (640, 640, 3)
    assert (mapping.pad_x, mapping.pad_y) == (0, 106)  # the odd row goes to the bottom
    assert (image[:106] == PAD_VALUE).all() and (image[106 + 427 :] == PAD_VALUE).all()
    assert (image[106 : 106 + 427] == 0).all()
    assert (mapping.scale_x, mapping.scale_y) == (1.0, 1.0)


def test_preprocess_is_rgb_scaled_to_one(detector: YoloOnnx) -> None:
    frame = np.zeros((640, 640, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    tensor, _ = detector.preprocess(frame)
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, :, 0, 0], [0.0, 0.0, 1.0])  # R, G, B


# --- filters through the plugin ---------------------------------------------------------


def test_class_allow_list_and_per_class_thresholds(model_file: tuple[Path, str, Path]) -> None:
    det = YoloOnnx(
        _config(
            model_file,
            score_threshold=0.5,
            classes=["person", "car", "truck"],
            class_thresholds={"car": 0.3, "truck": 0.8},
        )
    )
    _, mapping = det.preprocess(np.zeros((640, 640, 3), np.uint8))
    out = _output(
        [
            (0, 0, 50, 50, 0, 0.55),  # person over 0.5: kept
            (100, 0, 150, 50, 0, 0.45),  # person under 0.5: dropped
            (200, 0, 250, 50, 2, 0.35),  # car over its own 0.3: kept
            (300, 0, 350, 50, 7, 0.75),  # truck under its own 0.8: dropped
            (400, 0, 450, 50, 5, 0.99),  # bus, not in classes: dropped
        ]
    )
    dets = det.decode(out, mapping)
    assert [dets.label(i) for i in range(len(dets))] == ["person", "car"]
    # An anchor whose best class is excluded still yields its best allowed class.
    out[0, 4 + 0, 100 + 37 * 4] = 0.6  # the bus anchor also scores person 0.6
    dets = det.decode(out, mapping)
    assert sorted(dets.label(i) for i in range(len(dets))) == ["car", "person", "person"]


def test_nms_is_class_aware(detector: YoloOnnx) -> None:
    _, mapping = detector.preprocess(np.zeros((640, 640, 3), np.uint8))
    out = _output(
        [
            (100, 100, 200, 200, 2, 0.9),
            (102, 101, 201, 203, 2, 0.8),  # same car, weaker: suppressed
            (101, 100, 200, 199, 7, 0.7),  # same place, truck: kept
        ]
    )
    dets = detector.decode(out, mapping)
    assert [(dets.label(i), round(float(dets.scores[i]), 2)) for i in range(len(dets))] == [
        ("car", 0.9),
        ("truck", 0.7),
    ]


# --- class names --------------------------------------------------------------------------


def test_names_file(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text(" bin \nbag\n\n\n", encoding="utf-8")
    assert load_class_names(str(path)) == ("bin", "bag")
    path.write_text("bin\n\nbag\n", encoding="utf-8")
    with pytest.raises(DetectorSetupError, match="class 1 has a blank name"):
        load_class_names(str(path))
    with pytest.raises(DetectorSetupError, match="cannot read names file"):
        load_class_names(str(tmp_path / "absent.txt"))
    assert load_class_names(["a", "b"]) == ("a", "b")


def test_config_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="'car' appears twice"):
        YoloOnnxConfig.model_validate(
            {"type": "yolo-onnx", "model": "m.onnx", "sha256": "a" * 64, "class_names": ["car"] * 2}
        )
