"""Test videos composed from real footage (OpenCV's vtest.avi, a fixed camera).

- the *background*: the per-pixel median of frames spread over the whole
  clip, which removes the people walking by and keeps what stands still
  (the building, the parked van and car);
- *people*: real people cut out of real frames where the detector found
  them, pasted back at the very place they were filmed, so scale, light
  and perspective are the camera's own;
- *walking*: runs of the original frames.

Videos are written with the camera's 10 fps, as MJPG AVI or H.264 MP4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import box_iou
from detectors.nanodet import NanoDet
from edge.clip_writer import ClipSettings, write_clip

Image = npt.NDArray[np.uint8]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FPS = 10.0
CROSSING = [[0, 190], [768, 190], [768, 440], [0, 440]]
BAY = [[600, 55], [768, 55], [768, 130], [600, 130]]


def vtest_frames() -> Iterator[Image]:
    cap = cv2.VideoCapture(str(VTEST))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield np.asarray(frame, dtype=np.uint8)
    finally:
        cap.release()


@cache
def all_frames() -> tuple[Image, ...]:
    return tuple(vtest_frames())


@cache
def background() -> Image:
    frames = all_frames()
    sample = np.stack(frames[:: max(1, len(frames) // 60)])
    return np.asarray(np.median(sample, axis=0), dtype=np.uint8)


@dataclass(frozen=True)
class Cutout:
    box: tuple[int, int, int, int]
    pixels: Image


@cache
def people(count: int = 8) -> tuple[Cutout, ...]:
    """``count`` real people, well detected, standing apart from each other in the crossing."""
    detector = NanoDet(score_threshold=0.6)
    picked: list[Cutout] = []
    frames = all_frames()
    for frame in frames[::7]:
        dets = detector.detect(frame).of_classes({"person"})
        for i in range(len(dets)):
            x1, y1, x2, y2 = (int(v) for v in dets.xyxy[i])
            if not (200 < y2 < 430 and x1 > 20 and x2 < 740 and y2 - y1 > 60):
                continue
            box = np.array([[x1, y1, x2, y2]], np.float32)
            taken = np.array([c.box for c in picked], np.float32).reshape(-1, 4)
            if len(taken) and float(box_iou(box, taken).max()) > 0.0:
                continue
            picked.append(Cutout((x1, y1, x2, y2), frame[y1:y2, x1:x2].copy()))
            if len(picked) == count:
                return tuple(picked)
    raise AssertionError(f"only {len(picked)} separable people found in vtest.avi")


def paste(image: Image, cutouts: tuple[Cutout, ...]) -> Image:
    out = image.copy()
    for c in cutouts:
        x1, y1, x2, y2 = c.box
        out[y1:y2, x1:x2] = c.pixels
    return out


def noisy(image: Image, rng: np.random.Generator) -> Image:
    """Sensor noise, so still frames are not bit-identical (as no camera's are)."""
    noise = rng.normal(0, 2.0, image.shape)
    return np.asarray(np.clip(image.astype(np.float32) + noise, 0, 255), dtype=np.uint8)


def write(path: Path, frames: Iterator[Image], fps: float = FPS) -> Path:
    """MJPG AVI, or H.264 MP4 (as cameras send) when ``path`` ends in .mp4."""
    if path.suffix == ".mp4":
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        timed = ((t0 + timedelta(seconds=i / fps), f) for i, f in enumerate(frames))
        write_clip(timed, path, ClipSettings(preset="veryfast", crf=23))
        return path
    writer: cv2.VideoWriter | None = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    return path


def static_scene(
    path: Path, seconds: int = 60, walking: tuple[float, float] = (20, 28), fps: float = FPS
) -> Path:
    """A still street (the background) with real people walking by during ``walking``.

    ``fps`` below the footage's 10 fps takes every n-th real frame, as a
    camera sub-stream set to a lower rate would send.
    """
    rng = np.random.default_rng(1)
    real = all_frames()

    def frames() -> Iterator[Image]:
        for i in range(int(seconds * fps)):
            t = i / fps
            if walking[0] <= t < walking[1]:
                yield real[int((t - walking[0]) * FPS) + 100]
            else:
                yield noisy(background(), rng)

    return write(path, frames(), fps)


def crowd_scene(path: Path, people_count: int = 8) -> Path:
    """0-10 s real walking people; 10-50 s people standing in a group; 50-60 s empty."""
    rng = np.random.default_rng(2)
    real, group = all_frames(), people(people_count)

    def frames() -> Iterator[Image]:
        for i in range(600):
            t = i / FPS
            if t < 10:
                yield real[200 + i]
            elif t < 50:
                yield noisy(paste(background(), group), rng)
            else:
                yield noisy(background(), rng)

    return write(path, frames())


def blanked(path: Path, blank: Callable[[int], bool]) -> Path:
    """vtest.avi with the frames ``blank(i)`` picks replaced by black (nothing to detect)."""

    def frames() -> Iterator[Image]:
        for i, frame in enumerate(all_frames()):
            yield np.zeros_like(frame) if blank(i) else frame

    return write(path, frames())


LEUVEN = Path("/usr/share/doc/opencv-doc/examples/data/leuvenB.jpg")
LEUVEN_WALL = [[100, 380], [300, 380], [300, 490], [100, 490]]  # two bicycles lean here
LEUVEN_STREET = [[420, 420], [620, 420], [620, 560], [420, 560]]  # open cobbles


def still_photo(path: Path, photo: Path, seconds: int) -> Path:
    """A real street photo (OpenCV's leuvenB.jpg) held still, with sensor noise."""
    rng = np.random.default_rng(3)
    image = cv2.imread(str(photo))
    assert image is not None, photo
    still = np.asarray(image, dtype=np.uint8)
    return write(path, (noisy(still, rng) for _ in range(int(seconds * FPS))))
