"""Privacy (edge/privacy.py, detectors/faces.py): the bundled face detector on real
pictures, faces blurred in the evidence an alert references (snapshot, frame, clip,
camera-health snapshot), the unblurred originals kept on the box only and deleted
after ``originals_keep_h``, and a camera without privacy left as it was.

Blur is measured, not looked at: the variance of the Laplacian (high-frequency
energy) inside a face drops by a large factor, and the picture outside the blurred
boxes is unchanged. All unit tests (no broker); about 10 s.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from core.records import Alert, Evidence, EvidenceKind
from detectors.detections import Detections
from detectors.faces import DEFAULT_MODEL, DEFAULT_SHA256, FaceDetector, anchor_centres, tiles
from detectors.model_file import ModelFileError, sha256_of
from edge.camera_worker import CameraWorker
from edge.clip_buffer import compress
from edge.config import parse_edge_config
from edge.disk_guard import DiskGuard
from edge.outbox import Outbox
from edge.privacy import (
    FACE_MARGIN,
    ORIGINALS,
    PrivacyConfig,
    Redactor,
    enlarge,
    faces_between,
    key_frames,
)
from ingest.frames import Frame
from tests.support.factories import dets
from tests.support.pictures import best_iou, read, sharpness

Image = npt.NDArray[np.uint8]

# Faces of ultralytics 8.4.190's assets/zidane.jpg (1280x720), drawn by hand on the
# photo (hairline to chin, ear to nose or ear to ear).
ANCELOTTI = (900, 125, 1062, 292)
ZIDANE = (505, 268, 672, 442)
FACES = (ANCELOTTI, ZIDANE)
# vtest.avi frame 200: the man in a dark jacket walking towards the camera, right of
# centre (his face is about 11 px across)
VTEST_FRAME = 200
VTEST_FACE = (630, 270, 645, 286)

CAM = "cam-1"
T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def zidane(zidane_jpg: Path) -> Image:
    image = cv2.imread(str(zidane_jpg))
    assert image is not None
    return np.asarray(image, np.uint8)


def outside(
    shape: tuple[int, ...], boxes: npt.NDArray[np.int32], pad: int
) -> npt.NDArray[np.bool_]:
    """Pixels farther than ``pad`` from every box (JPEG blocks near an edit may change)."""
    mask = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in boxes.tolist():
        mask[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad] = False
    return mask


# -- the model file and the detector ------------------------------------------------------


def test_the_bundled_model_is_the_one_in_sha256sums() -> None:
    lines = (DEFAULT_MODEL.parent / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split() for line in lines)}
    assert sums["blazeface-back.onnx"] == DEFAULT_SHA256 == sha256_of(DEFAULT_MODEL)


def test_refuses_a_wrong_model_file(tmp_path: Path) -> None:
    tampered = tmp_path / "blazeface-back.onnx"
    shutil.copyfile(DEFAULT_MODEL, tampered)
    with tampered.open("r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelFileError, match="sha256"):
        FaceDetector(tampered, DEFAULT_SHA256)


def test_anchors_and_tiles() -> None:
    a = anchor_centres()
    assert a.shape == (896, 2)
    assert a[0].tolist() == a[1].tolist() == [8.0, 8.0]  # stride 16, two per cell
    assert a[512].tolist() == a[517].tolist() == [16.0, 16.0]  # stride 32, six per cell
    assert a[-1].tolist() == [240.0, 240.0]
    assert tiles(200, 256) == [0]
    assert tiles(768, 256) == [0, 192, 384, 512]  # overlap a quarter, the last at the edge


def test_finds_both_faces_in_zidane_with_their_eyes_inside(
    faces: FaceDetector, zidane: Image
) -> None:
    found = faces.detect(zidane)
    for ref in FACES:
        assert best_iou(ref, found.xyxy) >= 0.5, (ref, found.xyxy.tolist())
    # the keypoints decode with the boxes: on the whole picture shrunk to 256 (one tile),
    # the best anchor's eyes lie in the upper half of its box
    square = np.zeros((1280, 1280, 3), np.uint8)
    square[:720] = zidane
    raw = faces.infer(np.asarray(cv2.resize(square, (256, 256), interpolation=cv2.INTER_AREA)))
    best = int(np.argmax(raw.scores))
    x1, y1, x2, y2 = raw.xyxy[best]
    for ex, ey in raw.keypoints[best, :2]:
        assert x1 < ex < x2 and y1 < ey < (y1 + y2) / 2


def test_finds_the_small_face_on_a_vtest_frame(faces: FaceDetector, vtest_video: Path) -> None:
    cap = cv2.VideoCapture(str(vtest_video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, VTEST_FRAME)
    ok, frame = cap.read()
    cap.release()
    assert ok
    found = faces.detect(np.asarray(frame, np.uint8))
    assert best_iou(VTEST_FACE, found.xyxy) >= 0.3, found.xyxy.tolist()
    assert faces.cost(768, 576) == 25  # 24 tiles at 1.39x, one of the whole frame


def test_nothing_on_a_blank_frame(faces: FaceDetector) -> None:
    assert len(faces.detect(np.full((576, 768, 3), 127, np.uint8))) == 0


# -- snapshots and frames -----------------------------------------------------------------


def redactor(tmp: Path, faces: FaceDetector, keep: bool = True) -> Redactor:
    return Redactor(PrivacyConfig(blur_faces=True), tmp / CAM, keep_originals=keep, detector=faces)


def test_the_referenced_snapshot_is_blurred_and_the_original_stays_aside(
    tmp_path: Path, faces: FaceDetector, zidane: Image
) -> None:
    r = redactor(tmp_path, faces)
    picture = Frame(CAM, 0, 0.0, T0, zidane)
    snapshot, frame = r.write_alert_evidence("a1", picture, picture, lambda image: image)
    assert snapshot.kind is EvidenceKind.SNAPSHOT and frame.kind is EvidenceKind.FRAME
    assert Path(snapshot.path) == tmp_path / CAM / "a1.jpg"
    original = tmp_path / CAM / ORIGINALS / "a1.jpg"
    assert original.is_file() and (tmp_path / CAM / ORIGINALS / "a1.frame.jpg").is_file()
    for path in (snapshot.path, frame.path):
        blurred, kept = read(path), read(original)
        for face in FACES:
            before, after = sharpness(kept, face), sharpness(blurred, face)
            assert before > 50, "the original keeps its detail"
            assert after < before / 20, (face, before, after)
            assert sharpness(kept, face) > 0.7 * sharpness(zidane, face)
    # outside the blurred boxes the uploaded picture is the original
    blurred, kept = read(snapshot.path), read(original)
    boxes = enlarge(faces.detect(zidane).xyxy, FACE_MARGIN, 1280, 720)
    away = outside(blurred.shape, boxes, pad=16)
    diff = np.abs(blurred.astype(np.int16) - kept.astype(np.int16)).max(axis=2)
    assert away.mean() > 0.5
    assert int(diff[away].max()) <= 2


def test_drawing_goes_on_the_blurred_picture(
    tmp_path: Path, faces: FaceDetector, zidane: Image
) -> None:
    def draw(image: Image) -> Image:
        out = image.copy()
        x1, y1, x2, y2 = ZIDANE
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), 3)  # a box over the face
        return out

    picture = Frame(CAM, 0, 0.0, T0, zidane)
    snapshot, _ = redactor(tmp_path, faces).write_alert_evidence("a1", picture, picture, draw)
    x1, y1, _, _ = ZIDANE
    b, g, r = read(snapshot.path)[y1 + 60, x1].tolist()  # on the drawn box's left side
    assert r > 200 and g < 60 and b < 60


def test_the_frame_on_the_sub_stream_is_searched_on_its_own(
    tmp_path: Path, faces: FaceDetector, zidane: Image
) -> None:
    main = Frame(CAM, 0, 0.0, T0, zidane)
    sub = Frame(CAM, 0, 0.0, T0, np.asarray(cv2.resize(zidane, (640, 360)), np.uint8))
    _, frame = redactor(tmp_path, faces).write_alert_evidence("a1", main, sub, lambda i: i)
    blurred = read(frame.path)
    for face in FACES:
        x1, y1, x2, y2 = face
        half = (x1 // 2, y1 // 2, x2 // 2, y2 // 2)
        assert sharpness(blurred, half) < sharpness(sub.image, half) / 10


def test_without_originals_none_are_written(
    tmp_path: Path, faces: FaceDetector, zidane: Image
) -> None:
    picture = Frame(CAM, 0, 0.0, T0, zidane)
    redactor(tmp_path, faces, keep=False).write_alert_evidence("a1", picture, picture, lambda i: i)
    assert not (tmp_path / CAM / ORIGINALS).exists()


def test_a_health_snapshot_is_scrubbed_in_place(
    tmp_path: Path, faces: FaceDetector, zidane: Image
) -> None:
    from edge.snapshot import write_snapshot

    written = write_snapshot(zidane, tmp_path / CAM, "h1", T0)
    scrubbed = redactor(tmp_path, faces).scrub(written)
    assert scrubbed.path == written.path and scrubbed.sha256 != written.sha256
    assert scrubbed.sha256 == sha256_of(Path(scrubbed.path))
    assert scrubbed.size == Path(scrubbed.path).stat().st_size
    for face in FACES:
        assert sharpness(read(scrubbed.path), face) < sharpness(zidane, face) / 20
    assert sha256_of(tmp_path / CAM / ORIGINALS / "h1.jpg") == written.sha256


# -- clips --------------------------------------------------------------------------------


def test_key_frames_and_boxes_between_them() -> None:
    times = [T0 + timedelta(seconds=0.1 * i) for i in range(12)]
    assert key_frames(times, 0.5) == [0, 5, 10, 11]
    assert key_frames(times[:1], 0.5) == [0]
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[10, 0, 20, 10], [100, 100, 110, 110]], np.float32)
    assert faces_between(a, b, 0.0).tolist() == a.tolist()
    half = faces_between(a, b, 0.5).tolist()
    assert [5, 0, 15, 10] in half  # the face that moved, halfway
    assert a.tolist()[0] in half and b.tolist()[1] in half  # and both ends, held


def test_a_face_moving_through_a_clip_is_blurred_in_every_frame(
    tmp_path: Path, faces: FaceDetector, zidane: Image
) -> None:
    # the photo slides 20 px to the right per frame at 10 fps; faces searched every 0.5 s
    r = Redactor(
        PrivacyConfig(blur_faces=True, clip_detect_every_s=0.5),
        tmp_path / CAM,
        keep_originals=True,
        detector=faces,
    )
    shots = []
    for i in range(8):
        image = np.zeros_like(zidane)
        image[:, 20 * i :] = zidane[:, : 1280 - 20 * i]
        shots.append(Frame(CAM, i, i / 10, T0 + timedelta(seconds=i / 10), image))
    out = list(r.clip_frames([compress(f) for f in shots]))
    assert r.clip_detections == 3  # frames 0, 5 and the last
    for i, (at, image) in enumerate(out):
        assert at == shots[i].captured_at
        for x1, y1, x2, y2 in FACES:
            moved = (x1 + 20 * i, y1, x2 + 20 * i, y2)
            assert sharpness(image, moved) < sharpness(shots[i].image, moved) / 10, (i, moved)


# -- a camera worker ----------------------------------------------------------------------


class ParkedCar:
    """A detector finding a car standing in the zone on every frame."""

    labels = dets().labels

    def detect(self, frame: Image) -> Detections:
        return dets(("car", (40, 560, 400, 710), 0.9))


def worker(
    tmp: Path,
    alerts: list[Alert],
    *,
    privacy: bool,
    clips: bool = False,
    pool: Executor | None = None,
) -> CameraWorker:
    cfg = parse_edge_config({
        "edge": {"evidence_dir": str(tmp), "originals_keep_h": 2},
        "places": [{"place_id": "a"}],
        "cameras": [{
            "camera_id": CAM, "url": "unused",
            "motion": {"enabled": False},
            "clip": {"enabled": clips, "pre_s": 1.0, "post_s": 1.0},
            "health": {"enabled": False},
            "privacy": {"blur_faces": privacy},
            "zones": [{"zone_id": "z", "place": "a",
                       "polygon": [[0, 0], [1280, 0], [1280, 720], [0, 720]]}],
            "rules": [{"type": "illegal_parking", "rule_id": "r", "zone": "z",
                       "dwell_s": 1.0, "repeat_every_s": 60.0}],
        }],
    })  # fmt: skip
    return CameraWorker(cfg.cameras[0], cfg, ParkedCar(), tmp, alerts.append, evidence_pool=pool)


def run(w: CameraWorker, image: Image, n: int) -> None:
    for i in range(n):
        w.process(Frame(CAM, i, i / 2, T0 + timedelta(seconds=i / 2), image))
    w.finish()


def evidence(alert: Alert, kind: EvidenceKind) -> Evidence:
    return next(e for e in alert.evidence if e.kind is kind)


@pytest.mark.parametrize("pooled", [False, True], ids=["on-the-camera-thread", "on-the-pool"])
def test_a_privacy_camera_uploads_only_blurred_evidence(
    tmp_path: Path, zidane: Image, pooled: bool
) -> None:
    alerts: list[Alert] = []
    with ThreadPoolExecutor(2, thread_name_prefix="evidence") as pool:
        w = worker(tmp_path, alerts, privacy=True, clips=True, pool=pool if pooled else None)
        assert w.privacy is not None and w.health.redact == w.privacy.scrub  # health too
        run(w, zidane, 8)
    assert len(alerts) == 1
    alert = alerts[0]
    assert [e.kind for e in alert.evidence] == [
        EvidenceKind.SNAPSHOT,
        EvidenceKind.FRAME,
        EvidenceKind.CLIP,
    ]
    for kind in (EvidenceKind.SNAPSHOT, EvidenceKind.FRAME):
        image = read(evidence(alert, kind).path)
        for face in FACES:
            assert sharpness(image, face) < sharpness(zidane, face) / 20, (kind, face)
    cap = cv2.VideoCapture(evidence(alert, EvidenceKind.CLIP).path)
    ok, first = cap.read()
    cap.release()
    assert ok
    for face in FACES:
        assert sharpness(np.asarray(first, np.uint8), face) < sharpness(zidane, face) / 10
    originals = tmp_path / CAM / ORIGINALS
    assert sorted(p.name for p in originals.iterdir()) == sorted(
        f"{alert.alert_id}{suffix}" for suffix in (".jpg", ".frame.jpg", ".mp4")
    )
    # what goes into the outbox's evidence lane: the referenced files only
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        outbox.put_records([alert], upload=True)
        lane = [Evidence.model_validate_json(e.value).path for e in outbox.peek("evidence", 10)]
    finally:
        outbox.close()
    assert sorted(lane) == sorted(e.path for e in alert.evidence)
    assert not any(f"/{ORIGINALS}/" in p for p in lane)


def test_a_camera_stopping_after_the_pool_blurs_on_its_own_thread(
    tmp_path: Path, zidane: Image
) -> None:
    alerts: list[Alert] = []
    pool = ThreadPoolExecutor(1)
    pool.shutdown()  # the box stopping while a late camera still raises
    run(worker(tmp_path, alerts, privacy=True, pool=pool), zidane, 8)
    ((snapshot, _frame),) = [a.evidence for a in alerts]
    for face in FACES:
        assert sharpness(read(snapshot.path), face) < sharpness(zidane, face) / 20


def test_an_alert_whose_blurring_fails_goes_without_pictures_and_is_counted(
    tmp_path: Path, zidane: Image
) -> None:
    alerts: list[Alert] = []
    with ThreadPoolExecutor(1) as pool:
        w = worker(tmp_path, alerts, privacy=True, pool=pool)
        assert w.privacy is not None

        def broken(image: Image) -> npt.NDArray[np.float32]:
            raise OSError("face model unreadable")

        w.privacy.faces = broken  # type: ignore[method-assign]
        run(w, zidane, 8)
    assert len(alerts) == 1  # the case is raised all the same: nothing unblurred leaves
    assert alerts[0].evidence == ()
    assert w.snapshot_failures == {"OSError": 1}
    assert not list((tmp_path / CAM).glob("*.jpg"))


def test_a_camera_without_privacy_is_untouched(tmp_path: Path, zidane: Image) -> None:
    alerts: list[Alert] = []
    run(worker(tmp_path, alerts, privacy=False), zidane, 4)
    assert len(alerts) == 1
    frame = read(evidence(alerts[0], EvidenceKind.FRAME).path)
    for face in FACES:
        assert sharpness(frame, face) > 0.7 * sharpness(zidane, face)
    assert not (tmp_path / CAM / ORIGINALS).exists()


# -- originals are deleted after their time -----------------------------------------------


def test_the_disk_guard_deletes_originals_after_their_time(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    originals = tmp_path / CAM / ORIGINALS
    originals.mkdir(parents=True)
    old, recent = originals / "old.jpg", originals / "recent.mp4"
    uploaded = tmp_path / CAM / "old.jpg"  # evidence proper: not the sweep's business
    for path, age_h in ((old, 3.0), (recent, 1.0), (uploaded, 3.0)):
        path.write_bytes(b"x")
        at = (now - timedelta(hours=age_h)).timestamp()
        os.utime(path, (at, at))
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        guard = DiskGuard("box", tmp_path, outbox, 0.0, uploads=True, originals_keep_h=2.0)
        assert guard.check(now) == []
    finally:
        outbox.close()
    assert not old.exists() and recent.exists() and uploaded.exists()
    assert guard.originals_deleted == 1


# -- configuration ------------------------------------------------------------------------


def test_privacy_is_off_unless_asked_for_and_kept_plates_need_plate_blurring() -> None:
    off = PrivacyConfig()
    assert not off.blur_faces and not off.blur_plates and not off.blurs_plates("illegal_parking")
    with pytest.raises(ValidationError, match="keep_plates_for needs blur_plates"):
        PrivacyConfig(blur_faces=True, keep_plates_for=["illegal_parking"])
    kept = PrivacyConfig(blur_plates=True, keep_plates_for=["illegal_parking"])
    assert kept.blurs_plates("street_vending") and not kept.blurs_plates("illegal_parking")
