"""The bundled NanoDet-m on a real photo, and the model-file check."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.detections import box_iou
from detectors.model_file import ModelFileError
from detectors.nanodet import DEFAULT_MODEL, DEFAULT_SHA256, NanoDet

# Reference boxes for ultralytics 8.4.190's assets/bus.jpg (810x1080), drawn
# by hand on the photo: a bus and four people (one cut by each edge).
BUS = (20, 230, 800, 720)
PEOPLE = [
    (54, 392, 244, 898),  # beige coat, left
    (222, 404, 344, 858),  # black coat, centre
    (668, 396, 810, 880),  # cut by the right edge
    (0, 556, 78, 866),  # cut by the left edge
]


@pytest.fixture(scope="module")
def detector() -> NanoDet:
    return NanoDet(score_threshold=0.35)


def _best_iou(ref: tuple[int, int, int, int], boxes: np.ndarray) -> float:
    iou = box_iou(np.array([ref], np.float32), boxes.astype(np.float32))
    return float(iou.max()) if iou.size else 0.0


def test_finds_the_bus_and_at_least_three_people(detector: NanoDet, bus_jpg: Path) -> None:
    image = cv2.imread(str(bus_jpg))
    assert image is not None
    dets = detector.detect(np.asarray(image, dtype=np.uint8))
    buses = dets.of_classes({"bus"})
    people = dets.of_classes({"person"})
    assert _best_iou(BUS, buses.xyxy) >= 0.5
    matched = [ref for ref in PEOPLE if _best_iou(ref, people.xyxy) >= 0.5]
    assert len(matched) >= 3, f"people found at IoU>=0.5: {matched}"


def test_blank_frame_has_no_confident_detections(detector: NanoDet) -> None:
    assert len(detector.detect(np.full((576, 768, 3), 127, np.uint8))) == 0


def test_refuses_a_wrong_model_file(tmp_path: Path) -> None:
    tampered = tmp_path / "nanodet-m.onnx"
    shutil.copyfile(DEFAULT_MODEL, tampered)
    with tampered.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelFileError, match="sha256"):
        NanoDet(tampered, DEFAULT_SHA256)


def test_refuses_a_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        NanoDet(tmp_path / "absent.onnx", DEFAULT_SHA256)


def test_model_card_states_the_digest_in_use() -> None:
    card = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()
    sums = (DEFAULT_MODEL.parent / "SHA256SUMS").read_text()
    assert DEFAULT_SHA256 in card
    assert sums.split()[0] == DEFAULT_SHA256


def test_fast_preprocess_equals_the_reference_normalisation(
    detector: NanoDet, bus_jpg: Path
) -> None:
    from detectors.nanodet import INPUT_SIZE, MEAN_BGR, STD_BGR

    image = np.asarray(cv2.imread(str(bus_jpg)), dtype=np.uint8)
    resized = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    reference = ((resized.astype(np.float32) - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)[None]
    fast = detector.preprocess(image)
    assert fast.shape == reference.shape == (1, 3, INPUT_SIZE, INPUT_SIZE)
    assert float(np.abs(fast - reference).max()) < 1e-4
