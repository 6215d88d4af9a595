"""Region-wise detection on motion: the crop's detections replace the cached
ones inside it, the rest stay, and a cut object sends the run to the whole
frame. The detector here is a stand-in that finds pure-white squares (a unit
test of the merge logic; real footage goes through tests/test_scenes.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from edge.camera_worker import CameraWorker
from ingest.frames import Frame
from streetwatch.config import parse_config

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
LABELS = ("person", "car")


class WhiteSquares:
    """Boxes around pure-white blobs, as 'car'; records the size of every input."""

    labels = LABELS

    def __init__(self) -> None:
        self.inputs: list[tuple[int, int]] = []

    def detect(self, frame: npt.NDArray[np.uint8]) -> Detections:
        self.inputs.append((frame.shape[1], frame.shape[0]))
        white = np.asarray(np.all(frame == 255, axis=2), np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(white)
        boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:] if area >= 100]
        k = len(boxes)
        return Detections(
            xyxy=np.array(boxes, np.float32).reshape(k, 4),
            scores=np.full(k, 0.9, np.float32),
            class_ids=np.ones(k, np.int32),
            labels=LABELS,
        )


def image(*squares: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    img = np.random.default_rng(0).integers(60, 200, (360, 640, 3), dtype=np.uint8)
    for x, y, size in squares:
        img[y : y + size, x : x + size] = 255
    return img


def worker(tmp: Path, detector: WhiteSquares) -> CameraWorker:
    cfg = parse_config({
        "edge": {"evidence_dir": str(tmp)},
        "places": [{"place_id": "p"}],
        "cameras": [{
            "camera_id": "cam", "url": "unused", "analysis_fps": 2.0,
            "motion": {"full_check_every_s": 60.0, "regions": True}, "clip": {"enabled": False},
            "zones": [{"zone_id": "z", "place": "p",
                       "polygon": [[0, 0], [640, 0], [640, 360], [0, 360]]}],
            "rules": [{"type": "illegal_parking", "rule_id": "r", "zone": "z", "dwell_s": 600}],
        }],
    })  # fmt: skip
    return CameraWorker(cfg.cameras[0], cfg, detector, tmp, lambda a: None)


def frame(i: int, img: npt.NDArray[np.uint8]) -> Frame:
    return Frame("cam", i, i / 2, T0 + timedelta(seconds=i / 2), img)


def boxes(d: Detections) -> list[list[int]]:
    return sorted(d.xyxy.astype(int).tolist())


def test_a_newcomer_is_detected_in_its_region_and_the_still_objects_are_kept(
    tmp_path: Path,
) -> None:
    det = WhiteSquares()
    w = worker(tmp_path, det)
    assert boxes(w.detections(frame(0, image((40, 40, 50))))) == [[40, 40, 90, 90]]
    assert boxes(w.detections(frame(1, image((40, 40, 50))))) == [[40, 40, 90, 90]]  # still
    both = w.detections(frame(2, image((40, 40, 50), (500, 250, 40))))
    # the newcomer, in frame pixels, from a 180 px crop around it; the first kept
    assert boxes(both) == [[40, 40, 90, 90], [500, 250, 540, 290]]
    assert det.inputs == [(640, 360), (180, 180)]
    assert (w.detector_runs, w.region_runs, w.region_fallbacks) == (2, 1, 0)


def test_an_object_leaving_its_region_is_dropped_there(tmp_path: Path) -> None:
    det = WhiteSquares()
    w = worker(tmp_path, det)
    w.detections(frame(0, image((40, 40, 50), (500, 250, 40))))
    gone = w.detections(frame(1, image((40, 40, 50))))  # the second one left
    assert boxes(gone) == [[40, 40, 90, 90]]
    assert w.region_runs == 1


def test_an_object_cut_by_the_region_edge_sends_the_run_to_the_whole_frame(
    tmp_path: Path,
) -> None:
    det = WhiteSquares()
    w = worker(tmp_path, det)
    # a still object that will straddle the edge of the newcomer's region
    w.detections(frame(0, image((400, 200, 60))))
    merged = w.detections(frame(1, image((400, 200, 60), (520, 280, 30))))
    assert boxes(merged) == [[400, 200, 460, 260], [520, 280, 550, 310]]
    assert det.inputs[1:] == [(180, 180), (640, 360)]
    assert (w.region_runs, w.region_fallbacks, w.detector_runs) == (1, 1, 3)
