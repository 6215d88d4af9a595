"""Test videos composed from real footage (OpenCV's vtest.avi, a fixed camera).

- the *background*: the per-pixel median of frames spread over the whole
  clip, which removes the people walking by and keeps what stands still
  (the building, the parked van and car);
- *people*: real people cut out of real frames where the detector found
  them, pasted back at the very place they were filmed, so scale, light
  and perspective are the camera's own;
- *walking*: runs of the original frames.

Stall and piled-goods scenes use a second real photo as the scene, OpenCV's
leuvenB.jpg (a cobbled street with bicycles against a wall), because
vtest's camera is too far away for the detector to name small goods:

- *masked people*: the same real vtest people, cut to their outline (where
  the frame differs from the background) instead of their box, enlarged
  1.3x to the street's scale;
- *potted plants*: OpenCV's alpha-matting sample photo (alphamat
  ``plant.jpg``) cut out with its own published matte ``plant_result.png``;
- walkers are masked people moved across the scene at walking pace.

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
from tests.support.paths import VTEST

Image = npt.NDArray[np.uint8]
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


def still_photo(path: Path, photo: Path, seconds: int, fps: float = FPS) -> Path:
    """A real street photo (OpenCV's leuvenB.jpg) held still, with sensor noise."""
    rng = np.random.default_rng(3)
    image = cv2.imread(str(photo))
    assert image is not None, photo
    still = np.asarray(image, dtype=np.uint8)
    return write(path, (noisy(still, rng) for _ in range(int(seconds * fps))), fps)


ALPHAMAT = Path("/usr/share/doc/opencv-doc/examples/alphamat")
LEUVEN_PAVEMENT = [[100, 370], [480, 370], [480, 505], [100, 505]]  # by the wall, bicycles
LEUVEN_ROAD = [[380, 440], [740, 440], [740, 563], [380, 563]]  # cobbles, no bicycles
WALK_PX_PER_S = 55.0  # about 1.3 m/s at this scale


@dataclass(frozen=True)
class Sprite:
    """A real object with its alpha (0..1), pasted by its bottom-left corner."""

    pixels: Image
    alpha: npt.NDArray[np.float32]

    def scaled(self, factor: float) -> Sprite:
        pixels = cv2.resize(self.pixels, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(self.alpha, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return Sprite(np.asarray(pixels, np.uint8), np.asarray(alpha, np.float32))


def put(image: Image, sprite: Sprite, x: int, bottom: int) -> Image:
    """Blend ``sprite`` into a copy of ``image``, clipped at the picture's edges."""
    out = image.copy()
    h, w = sprite.pixels.shape[:2]
    top = bottom - h
    x1, y1, x2, y2 = max(x, 0), max(top, 0), min(x + w, out.shape[1]), min(bottom, out.shape[0])
    if x1 >= x2 or y1 >= y2:
        return out
    src = sprite.pixels[y1 - top : y2 - top, x1 - x : x2 - x].astype(np.float32)
    a = sprite.alpha[y1 - top : y2 - top, x1 - x : x2 - x, None]
    dst = out[y1:y2, x1:x2].astype(np.float32)
    out[y1:y2, x1:x2] = np.asarray(a * src + (1 - a) * dst, np.uint8)
    return out


@cache
def masked_people() -> tuple[Sprite, ...]:
    """The real vtest people of :func:`people`, cut to their outline and enlarged 1.3x."""
    bg = background()
    out = []
    for c in people(8):
        x1, y1, x2, y2 = c.box
        diff = np.abs(c.pixels.astype(np.int16) - bg[y1:y2, x1:x2].astype(np.int16)).max(axis=2)
        mask = np.asarray(diff > 40, np.uint8) * 255
        mask = np.asarray(
            cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)), np.uint8
        )
        mask = np.asarray(
            cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)), np.uint8
        )
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        assert n > 1, c.box
        body = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        alpha = np.asarray(labels == body, np.float32)
        out.append(Sprite(c.pixels, alpha).scaled(1.3))
    return tuple(out)


@cache
def potted_plant() -> Sprite:
    """OpenCV's alphamat sample plant, cut out with its published matte."""
    pixels = cv2.imread(str(ALPHAMAT / "input_images" / "plant.jpg"))
    matte = cv2.imread(str(ALPHAMAT / "output_mattes" / "plant_result.png"), cv2.IMREAD_GRAYSCALE)
    assert pixels is not None and matte is not None, ALPHAMAT
    return Sprite(np.asarray(pixels, np.uint8), np.asarray(matte, np.float32) / 255.0)


def _leuven() -> Image:
    image = cv2.imread(str(LEUVEN))
    assert image is not None, LEUVEN
    return np.asarray(image, np.uint8)


def _walker_x(t: float, start: float, from_x: int) -> int:
    return int(from_x + (t - start) * WALK_PX_PER_S)


def stall_scene(path: Path, seconds: int = 60, arrive: float = 20.0, leave: float = 55.0) -> Path:
    """A street stall sets up by the bicycles on leuvenB's pavement.

    0-``arrive`` s: the bicycles alone; a walker passes along the pavement
    right by them (2-16 s). ``arrive``-``leave`` s: a vendor stands by the
    bicycles with a large potted plant for sale set out beside him; from 25 s
    a second walker crosses the street below. Then the stall is gone.
    """
    rng = np.random.default_rng(4)
    street, ppl, plant = _leuven(), masked_people(), potted_plant().scaled(0.28)

    def frames() -> Iterator[Image]:
        for i in range(int(seconds * FPS)):
            t = i / FPS
            image = street
            if arrive <= t < leave:
                image = put(image, plant, 330, 495)
                image = put(image, ppl[3], 275, 486)
            if 2 <= t < 16:
                image = put(image, ppl[1], _walker_x(t, 2, -60), 500)
            if 25 <= t < 39:
                image = put(image, ppl[7], _walker_x(t, 25, -60), 555)
            yield noisy(image, rng)

    return write(path, frames())


def piled_goods_scene(path: Path, seconds: int = 60, arrive: float = 15.0) -> Path:
    """Two large potted plants are put out on leuvenB's cobbled street at
    ``arrive`` and left there; walkers cross the street before (2-14 s) and
    after (30-44 s)."""
    rng = np.random.default_rng(5)
    street, ppl, plant = _leuven(), masked_people(), potted_plant()
    pots = [(plant.scaled(0.28), 420, 545), (plant.scaled(0.26), 585, 530)]

    def frames() -> Iterator[Image]:
        for i in range(int(seconds * FPS)):
            t = i / FPS
            image = street
            if t >= arrive:
                for sprite, x, bottom in pots:
                    image = put(image, sprite, x, bottom)
            if 2 <= t < 14:
                image = put(image, ppl[0], _walker_x(t, 2, 300), 545)
            if 30 <= t < 44:
                image = put(image, ppl[5], _walker_x(t, 30, 280), 530)
            yield noisy(image, rng)

    return write(path, frames())


RIDE_PX_PER_S = 150.0  # a bicycle ridden at about 3.5 m/s at this scale


def passing_bicycle() -> Sprite:
    """One of leuvenB's own bicycles with the patch of wall behind it (a box, not
    an outline: its thin frame defeats outline cutting), to ride along the road."""
    patch = _leuven()[392:478, 130:250].copy()
    return Sprite(patch, np.ones(patch.shape[:2], np.float32))


def bicycle_street_scene(path: Path, seconds: int = 40) -> Path:
    """leuvenB held still (bicycles against the wall) with a walker along the
    pavement past them (2-14 s) and a bicycle ridden along the road (20-24 s)."""
    rng = np.random.default_rng(6)
    street, ppl, bike = _leuven(), masked_people(), passing_bicycle()

    def frames() -> Iterator[Image]:
        for i in range(int(seconds * FPS)):
            t = i / FPS
            image = street
            if 2 <= t < 14:
                image = put(image, ppl[1], _walker_x(t, 2, -60), 500)
            if 20 <= t < 24:
                image = put(image, bike, int(150 + (t - 20) * RIDE_PX_PER_S), 545)
            yield noisy(image, rng)

    return write(path, frames())
