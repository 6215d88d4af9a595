"""Privacy benchmark: what blurring faces and plates adds to an alert's evidence, side by side.

    python -m bench.privacy [--repeat N] [--video PATH] [--photo PATH] [--car PATH]

On ``zidane.jpg`` (1280x720, two large faces), ``plate.png`` (518x331, a
parked car's plate) and on frames of ``vtest.avi`` (768x576, a street seen
from above: faces of 8-12 px), in this one run:

1. **plain**: what a camera without privacy does per alert: draw the snapshot,
   write it and the analysed frame as JPEGs (``edge/snapshot.py``);
2. **private**: what a camera blurring faces and plates does instead
   (:meth:`edge.privacy.Redactor.write_alert_evidence`): search faces and
   plates, blur them, draw, write the two blurred JPEGs and the two originals;
3. the parts of (2): the face search alone (tiles x one 256x256 inference),
   the plate search alone (one inference on the whole picture) and the blur;

printed as ms p50/p95 and the ratio private/plain (p50). Then a clip: 10 s of
vtest at its 10 fps (100 frames) encoded as the clip recorder does, without and
with privacy (faces searched every ``clip_detect_every_s`` = 0.5 s: 21 key
frames; plus the original clip kept on the box).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from core.coco import COCO_CLASSES
from detectors.detections import Detections
from detectors.faces import FaceDetector
from edge.clip_buffer import compress
from edge.clip_writer import write_clip
from edge.privacy import (
    FACE_MARGIN,
    PLATE_MARGIN,
    PrivacyConfig,
    Redactor,
    enlarge,
    obscure,
)
from edge.snapshot import annotate, write_frame, write_snapshot
from edge.zones import Zone
from ingest.frames import Frame

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
ZIDANE = Path(__file__).resolve().parent.parent / ".cache" / "media" / "zidane.jpg"
CAR = Path(__file__).resolve().parent.parent / ".cache" / "media" / "plate.png"
T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)

Image = npt.NDArray[np.uint8]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm caches
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def vtest_frames(video: Path, every: int, count: int) -> list[Image]:
    cap = cv2.VideoCapture(str(video))
    frames: list[Image] = []
    i = 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            frames.append(np.asarray(frame, np.uint8))
        i += 1
    cap.release()
    return frames


def snapshot_costs(
    name: str, images: list[Image], redactor: Redactor, out: Path, repeat: int
) -> None:
    h, w = images[0].shape[:2]
    zone = Zone("bay", [(w * 0.1, h * 0.6), (w * 0.9, h * 0.6), (w * 0.9, h), (w * 0.1, h)])
    header = ["illegal_parking: bench", "camera bench  place bay", "2026-11-20 12:00"]
    firing = Detections(
        xyxy=np.array([[w * 0.2, h * 0.7, w * 0.5, h * 0.95]], np.float32),
        scores=np.array([0.9], np.float32),
        class_ids=np.array([COCO_CLASSES.index("car")], np.int32),
        labels=COCO_CLASSES,
    )

    def draw(image: Image) -> Image:
        return annotate(image, zone, firing, header)

    n = [0]

    def pick() -> Frame:
        n[0] += 1
        return Frame("bench", n[0], 0.0, T0, images[n[0] % len(images)])

    def plain() -> None:
        f = pick()
        write_snapshot(draw(f.image), out, f"p{n[0]}", T0)
        write_frame(f.image, out, f"p{n[0]}", T0)

    def private() -> None:
        f = pick()
        redactor.write_alert_evidence(f"q{n[0]}", f, f, draw)

    def search() -> None:
        redactor.faces(pick().image)

    def search_plates() -> None:
        redactor.plates(pick().image)

    boxes = {
        id(img): np.concatenate(
            [
                enlarge(redactor.faces(img), FACE_MARGIN, w, h),
                enlarge(redactor.plates(img), PLATE_MARGIN, w, h),
            ]
        )
        for img in images
    }

    def blur() -> None:
        img = pick().image
        obscure(img, boxes[id(img)])

    rows = {
        "plain (draw + 2 JPEGs)": timed(plain, repeat),
        "private (search + blur + 4 JPEGs)": timed(private, repeat),
        "  of which: face search": timed(search, repeat),
        "  of which: plate search": timed(search_plates, repeat),
        "  of which: blur": timed(blur, repeat),
    }
    found = [len(redactor.faces(img)) for img in images]
    plates = [len(redactor.plates(img)) for img in images]
    assert redactor.detector is not None
    print(
        f"\n{name}: {w}x{h}, {len(images)} picture(s), faces found per picture {found}, "
        f"plates {plates}; {redactor.detector.cost(w, h)} face inferences per search"
    )
    for label, samples in rows.items():
        p50, p95 = percentiles(samples)
        print(f"  {label:36s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    ratio = percentiles(rows["private (search + blur + 4 JPEGs)"])[0] / max(
        percentiles(rows["plain (draw + 2 JPEGs)"])[0], 1e-9
    )
    print(f"  private / plain (p50) = {ratio:.1f}x")


def clip_costs(video: Path, redactor: Redactor, out: Path) -> None:
    images = vtest_frames(video, 1, 100)
    frames = [
        compress(Frame("bench", i, i / 10, T0 + timedelta(seconds=i / 10), img))
        for i, img in enumerate(images)
    ]

    def plain() -> None:
        write_clip(((f.captured_at, f.decode()) for f in frames), out / "plain.mp4")

    def private() -> None:
        write_clip(((f.captured_at, f.decode()) for f in frames), out / "original.mp4")
        write_clip(redactor.clip_frames(frames), out / "blurred.mp4")

    before = redactor.clip_detections
    plain_ms = timed(plain, 2)
    private_ms = timed(private, 2)
    keys = (redactor.clip_detections - before) // 3
    print(
        f"\nclip: 10 s of vtest at 10 fps ({len(frames)} frames), faces and plates searched on "
        f"{keys} key frames (every {redactor.cfg.clip_detect_every_s:g} s)"
    )
    print(f"  plain encode                          {statistics.median(plain_ms):7.0f} ms")
    print(f"  private (search, blur, + original)    {statistics.median(private_ms):7.0f} ms")
    print(
        f"  private / plain = {statistics.median(private_ms) / statistics.median(plain_ms):.1f}x "
        "(on the clip encoder thread, never the camera thread)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per row")
    parser.add_argument("--video", type=Path, default=VTEST)
    parser.add_argument("--photo", type=Path, default=ZIDANE)
    parser.add_argument("--car", type=Path, default=CAR)
    args = parser.parse_args()
    photo, car = cv2.imread(str(args.photo)), cv2.imread(str(args.car))
    if photo is None or car is None:
        raise SystemExit(f"{args.photo} or {args.car} is missing: run scripts/setup.sh test")
    cfg = PrivacyConfig(blur_faces=True, blur_plates=True)
    detector = FaceDetector(score_threshold=cfg.score_threshold, min_face=cfg.min_face)
    print(
        f"face detector: BlazeFace (back), 1 onnxruntime thread, min_face {cfg.min_face}, "
        f"score >= {cfg.score_threshold}; plate detector: plates-retina, 1 thread, "
        f"score >= {cfg.plate_score_threshold}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        redactor = Redactor(cfg, out / "cam", keep_originals=True, detector=detector)
        snapshot_costs("zidane.jpg", [np.asarray(photo, np.uint8)], redactor, out, args.repeat)
        snapshot_costs("plate.png", [np.asarray(car, np.uint8)], redactor, out, args.repeat)
        snapshot_costs("vtest.avi", vtest_frames(args.video, 40, 20), redactor, out, args.repeat)
        clip_costs(args.video, redactor, out)


if __name__ == "__main__":
    main()
