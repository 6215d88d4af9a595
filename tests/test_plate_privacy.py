"""Licence plates blurred in the evidence that leaves the box (edge/privacy.py), with the
real plate model (models/plates-retina.onnx) on a real photo.

The photo (``plate.png``, from the fast-alpr 0.4.0 sdist, fetched by
scripts/setup.sh) is a parked car seen from behind with its plate readable:
518x331, the plate about 80x23 pixels.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.records import Alert, EvidenceKind
from detectors.detections import Detections
from detectors.model_file import ModelFileError
from detectors.plates import DEFAULT_SHA256, PlateDetector, decode, priors
from edge.camera_worker import CameraWorker
from edge.clip_buffer import compress
from edge.config import parse_edge_config
from edge.privacy import ORIGINALS, PrivacyConfig, Redactor
from ingest.frames import Frame
from tests.support.factories import dets
from tests.support.pictures import Image, best_iou, read, sharpness

# the plate of plate.png, drawn by hand (xyxy)
PLATE = (306, 188, 389, 211)
CAM = "cam-1"
T0 = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def plates() -> PlateDetector:
    return PlateDetector()


@pytest.fixture(scope="module")
def car(plate_png: Path) -> Image:
    return read(plate_png)


# -- the detector ---------------------------------------------------------------------------


def test_priors_follow_the_model_layout() -> None:
    p = priors(331, 518)
    # ceil(331/8) x ceil(518/8) + ceil(331/16) x ceil(518/16) + ceil(331/32) x ceil(518/32),
    # two sizes per cell: the count the model answers with (7220 for this size)
    assert len(p) == 2 * (42 * 65 + 21 * 33 + 11 * 17) == 7220
    assert p[:2].tolist() == [[4, 4, 24, 24], [4, 4, 48, 48]]  # first cell, both sizes
    assert p[2].tolist() == [12, 4, 24, 24]  # then the next cell of the row
    zero = decode(np.zeros((2, 4), np.float32), p[:2])
    assert zero.tolist() == [[-8, -8, 16, 16], [-20, -20, 28, 28]]  # no regression: the prior


def test_the_plate_of_a_parked_car_is_found(plates: PlateDetector, car: Image) -> None:
    found = plates.detect(car)
    assert found.labels == ("plate",)
    assert best_iou(PLATE, found.xyxy) >= 0.6, found.xyxy
    # the same plate at other sizes (36 to 240 pixels wide)
    for scale in (0.5, 0.7, 1.5, 3.0):
        bigger = cv2.resize(car, None, fx=scale, fy=scale)
        scaled = plates.detect(np.asarray(bigger, np.uint8)).xyxy / scale
        assert best_iou(PLATE, scaled) >= 0.5, (scale, scaled)


def test_a_large_frame_is_shrunk_and_boxes_come_back_in_its_pixels(car: Image) -> None:
    small = PlateDetector(max_side=400)
    found = small.detect(car)
    assert best_iou(PLATE, found.xyxy) >= 0.5, found.xyxy


def test_no_plate_on_frames_without_cars(
    plates: PlateDetector, zidane_jpg: Path, vtest_video: Path
) -> None:
    assert len(plates.detect(read(zidane_jpg))) == 0
    cap = cv2.VideoCapture(str(vtest_video))
    seen = 0
    try:
        for i in range(0, 790, 40):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, frame = cap.read()
            assert ok
            seen += len(plates.detect(np.asarray(frame, np.uint8)))
    finally:
        cap.release()
    assert seen == 0


def test_a_plate_model_that_is_not_the_committed_one_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "plates.onnx"
    other.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        PlateDetector(other, DEFAULT_SHA256)


# -- the redactor ---------------------------------------------------------------------------


def redactor(tmp: Path, **privacy: object) -> Redactor:
    cfg = PrivacyConfig.model_validate({"blur_plates": True, **privacy})
    return Redactor(cfg, tmp / CAM, keep_originals=True)


def frame(image: Image, i: int = 0) -> Frame:
    return Frame(CAM, i, i / 2, T0 + timedelta(seconds=i / 2), image)


def test_an_uploaded_snapshot_has_the_plate_blurred_and_the_original_not(
    tmp_path: Path, car: Image
) -> None:
    r = redactor(tmp_path)
    assert r.detector is None  # faces not asked for: no face model loaded
    shot = frame(car)
    snapshot, analysed = r.write_alert_evidence("alert-1", shot, shot, lambda i: i)
    assert r.plates_blurred == 1
    for evidence in (snapshot, analysed):
        assert sharpness(read(evidence.path), PLATE) < sharpness(car, PLATE) / 10
    for name in ("alert-1.jpg", "alert-1.frame.jpg"):
        original = read(tmp_path / CAM / ORIGINALS / name)
        assert sharpness(original, PLATE) > 0.5 * sharpness(car, PLATE)


def test_plates_kept_for_enforcement_stay_sharp(tmp_path: Path, car: Image) -> None:
    r = redactor(tmp_path)
    shot = frame(car)
    snapshot, _ = r.write_alert_evidence("alert-2", shot, shot, lambda i: i, plates=False)
    assert sharpness(read(snapshot.path), PLATE) > 0.5 * sharpness(car, PLATE)
    assert r.plates_blurred == 0


def test_a_clip_has_the_plate_blurred_unless_it_is_kept(tmp_path: Path, car: Image) -> None:
    r = redactor(tmp_path, clip_detect_every_s=1.0)
    frames = [compress(frame(car, i)) for i in range(5)]
    blurred = [image for _, image in r.clip_frames(frames)]
    kept = [image for _, image in r.clip_frames(frames, plates=False)]
    assert len(blurred) == len(kept) == 5
    for image in blurred:  # key frames and the frames between them
        assert sharpness(image, PLATE) < sharpness(car, PLATE) / 5
    for image in kept:
        assert sharpness(image, PLATE) > 0.3 * sharpness(car, PLATE)


# -- a camera ---------------------------------------------------------------------------------


class ParkedCar:
    """A detector finding the photo's car standing in the zone on every frame."""

    labels = dets().labels

    def detect(self, frame: Image) -> Detections:
        return dets(("car", (60, 40, 460, 270), 0.9))


def camera(tmp: Path, alerts: list[Alert], keep: list[str]) -> CameraWorker:
    cfg = parse_edge_config({
        "edge": {"evidence_dir": str(tmp), "originals_keep_h": 2},
        "places": [{"place_id": "a"}],
        "cameras": [{
            "camera_id": CAM, "url": "unused",
            "motion": {"enabled": False},
            "clip": {"enabled": True, "pre_s": 1.0, "post_s": 1.0},
            "health": {"enabled": False},
            "privacy": {"blur_plates": True, "keep_plates_for": keep},
            "zones": [{"zone_id": "z", "place": "a",
                       "polygon": [[0, 0], [518, 0], [518, 331], [0, 331]]}],
            "rules": [{"type": "illegal_parking", "rule_id": "r", "zone": "z",
                       "dwell_s": 1.0, "repeat_every_s": 60.0}],
        }],
    })  # fmt: skip
    return CameraWorker(cfg.cameras[0], cfg, ParkedCar(), tmp, alerts.append)


@pytest.mark.parametrize("keep", [[], ["illegal_parking"]], ids=["blurred", "kept-for-parking"])
def test_a_parking_camera_blurs_plates_unless_parking_keeps_them(
    tmp_path: Path, car: Image, keep: list[str]
) -> None:
    alerts: list[Alert] = []
    w = camera(tmp_path, alerts, keep)
    for i in range(8):
        w.process(frame(car, i))
    w.finish()
    assert len(alerts) == 1 and alerts[0].category == "illegal_parking"
    by_kind = {e.kind: e for e in alerts[0].evidence}
    assert set(by_kind) == {EvidenceKind.SNAPSHOT, EvidenceKind.FRAME, EvidenceKind.CLIP}
    uploaded = read(by_kind[EvidenceKind.FRAME].path)
    cap = cv2.VideoCapture(by_kind[EvidenceKind.CLIP].path)
    ok, first = cap.read()
    cap.release()
    assert ok
    clip = np.asarray(first, np.uint8)
    if keep:
        assert sharpness(uploaded, PLATE) > 0.5 * sharpness(car, PLATE)
        assert sharpness(clip, PLATE) > 0.2 * sharpness(car, PLATE)
    else:
        assert sharpness(uploaded, PLATE) < sharpness(car, PLATE) / 10
        assert sharpness(clip, PLATE) < sharpness(car, PLATE) / 5
