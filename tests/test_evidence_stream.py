"""The main stream for evidence: EvidenceStream on its own, then a camera whose
snapshots and clips come from a full-resolution main stream while detection runs
on a low-resolution sub-stream.

The two streams are made from the same real footage (OpenCV's vtest.avi, 768x576,
10 fps): the main stream is the footage itself, the sub-stream the same frames
scaled to 384x288, both written as MJPG AVI. The parked van is detected at 384x288
in the same place (scaled) as at 768x576.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from core.records import Alert, Evidence, EvidenceKind
from edge.snapshot import FIRING_COLOUR, ZONE_COLOUR
from edge.worker import EdgeWorker
from ingest.evidence_stream import EvidenceStream
from ingest.frames import Frame
from streetwatch.config import parse_config
from tests.support.fakes import MemoryAlertSink
from tests.support.mjpeg_server import MjpegServer
from tests.support.paths import VTEST
from tests.support.polling import wait_until

FPS = 10.0
MAIN_SIZE = (768, 576)  # (W, H)
SUB_SIZE = (384, 288)
SECONDS = 16  # of footage: the van is there from the first frame; alert at 10 s + 3 s clip
BAY_SUB = [[300, 27], [384, 27], [384, 65], [300, 65]]  # the parked van, sub-stream pixels
START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

Image = npt.NDArray[Any]


# --- helpers --------------------------------------------------------------------------------


def write_video(path: Path, frames: list[Image], fps: float = FPS) -> Path:
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened(), path
    for f in frames:
        out.write(f)
    out.release()
    return path


def vtest_frames(seconds: float) -> list[Image]:
    cap = cv2.VideoCapture(str(VTEST))
    frames: list[Image] = []
    try:
        while len(frames) < seconds * FPS:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(np.asarray(image, dtype=np.uint8))
    finally:
        cap.release()
    assert len(frames) == seconds * FPS, "vtest.avi (package opencv-doc) is missing or short"
    return frames


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(main, sub): the same 16 s of footage at 768x576 and at 384x288, 10 fps MJPG."""
    d = tmp_path_factory.mktemp("streams")
    frames = vtest_frames(SECONDS)
    main = write_video(d / "main.avi", frames)
    sub = write_video(
        d / "sub.avi", [cv2.resize(f, SUB_SIZE, interpolation=cv2.INTER_AREA) for f in frames]
    )
    return main, sub


def frame_at(t: float, value: int = 0, size: tuple[int, int] = (8, 6)) -> Frame:
    w, h = size
    return Frame(
        camera_id="cam",
        index=round(t * 100),
        position_s=t,
        captured_at=START + timedelta(seconds=t),
        image=np.full((h, w, 3), value, np.uint8),
    )


def colour_near(image: Image, x: float, y: float, bgr: tuple[int, int, int]) -> bool:
    """Whether a pixel of the 3x3 patch at (x, y) has (about) colour ``bgr``."""
    patch = image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3)
    return bool((np.abs(patch.astype(int) - bgr).max(axis=1) < 60).any())


def clip_shape_and_rate(path: str) -> tuple[int, int, int, float]:
    """(width, height, frames, frames per second of playing time) of an MP4 clip."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        times = [
            float(f.pts * f.time_base)
            for f in container.decode(stream)
            if f.pts is not None and f.time_base is not None
        ]
        width, height = stream.codec_context.width, stream.codec_context.height
    span = max(times) - min(times)
    return width, height, len(times), (len(times) - 1) / span


# --- EvidenceStream on its own ----------------------------------------------------------------


def unstarted(**kwargs: Any) -> EvidenceStream:
    """A stream whose ring is fed by the test (no reader thread)."""
    return EvidenceStream("cam", "rtsp://127.0.0.1:9/none", start=START, **kwargs)


def test_latest_is_the_nearest_frame_within_the_skew() -> None:
    ev = unstarted()
    for i in range(10):  # 0.0, 0.1, ... 0.9 s
        ev._keep(frame_at(i / 10, value=i))

    def at(t: float, skew: float = 0.5) -> Frame | None:
        return ev.latest(START + timedelta(seconds=t), skew, wait_s=0)

    hit = at(0.42)
    assert hit is not None and hit.image[0, 0, 0] == 4  # 0.4 is nearer than 0.5
    hit = at(0.47)
    assert hit is not None and hit.image[0, 0, 0] == 5
    hit = at(-0.2)  # before the ring: its oldest frame, 0.2 s away
    assert hit is not None and hit.image[0, 0, 0] == 0
    assert at(-0.2, skew=0.1) is None  # ... but not within 0.1 s
    assert at(1.5) is None  # 0.6 s after the newest
    hit = at(1.3)
    assert hit is not None and hit.image[0, 0, 0] == 9
    assert ev.newest is not None and ev.newest.image[0, 0, 0] == 9


def test_latest_of_an_empty_stream_is_none_without_waiting_for_long() -> None:
    ev = unstarted()
    started = time.monotonic()
    assert ev.latest(START, 0.3) is None  # a live stream waits at most the skew
    assert time.monotonic() - started < 1.0


def test_ring_stays_within_its_window_and_budget() -> None:
    # time bound: 25 fps for 10 s, 2 s window, budget for 1000 frames
    ev = unstarted(window_s=2.0, budget_bytes=1000 * 144)
    for i in range(250):
        ev._keep(frame_at(i / 25))
    assert 49 <= len(ev) <= 51  # the last 2 s, every frame
    ring = list(ev._ring)
    assert ring[-1].captured_at == START + timedelta(seconds=249 / 25)
    assert ring[-1].captured_at - ring[0].captured_at <= timedelta(seconds=2)

    # memory bound: room for 10 frames of this size; the ring thins itself out to
    # 10 frames that still span the 2 s window, the newest always kept
    small = unstarted(window_s=2.0, budget_bytes=10 * 144)
    for i in range(250):
        small._keep(frame_at(i / 25))
    assert len(small) <= 10
    ring = list(small._ring)
    assert ring[-1].captured_at == START + timedelta(seconds=249 / 25)
    assert ring[-1].captured_at - ring[0].captured_at >= timedelta(seconds=1.5)
    gaps = [(b.captured_at - a.captured_at).total_seconds() for a, b in itertools.pairwise(ring)]
    assert max(gaps[:-1]) <= 0.25  # ~window / capacity apart
    # any time inside the window has a frame within half the spacing (+ one frame)
    for k in range(20):
        t = 8.1 + k * 0.09
        hit = small.latest(START + timedelta(seconds=t), 0.15, wait_s=0)
        assert hit is not None, t


def test_a_file_follows_the_camera_and_feeds_every_frame(tmp_path: Path) -> None:
    video = write_video(
        tmp_path / "main.avi",
        [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(40)],  # 4 s at 10 fps
    )
    got: list[Frame] = []
    ev = EvidenceStream("cam", str(video), start=START, pace="fast", on_frame=got.append)
    assert ev.follows_camera
    ev.start()
    try:
        time.sleep(0.3)
        assert got == []  # nothing analysed yet: the reader waits for the camera
        ev.advance(START + timedelta(seconds=1.0))
        wait_until(lambda: len(got) >= 11, "11 frames", timeout=5, interval=0.01)
        time.sleep(0.2)
        # up to the camera's time (+ lead_s, 0 by default), not beyond
        assert [f.index for f in got] == list(range(11))
        # latest() waits for the reader to reach the time asked for
        hit = ev.latest(START + timedelta(seconds=3.5), 0.05)
        assert hit is not None and hit.index == 35
        ev.advance(START + timedelta(seconds=10))
        wait_until(lambda: ev.ended, "the end of the file", timeout=5, interval=0.01)
        assert ev.ended and not ev.failed
        assert [f.index for f in got] == list(range(40))  # every frame, in order
    finally:
        assert ev.stop(5)


def test_a_file_at_another_frame_rate_does_not_keep_the_camera_waiting(tmp_path: Path) -> None:
    # main at 25 fps: frames at 0.08 and 0.12 s around an analysed frame at 0.1 s
    video = write_video(
        tmp_path / "main25.avi", [np.full((48, 64, 3), i, np.uint8) for i in range(25)], fps=25
    )
    ev = EvidenceStream("cam", str(video), start=START, pace="fast").start()
    try:
        started = time.monotonic()
        hit = ev.latest(START + timedelta(seconds=0.1), 0.05)
        assert time.monotonic() - started < 2.0  # not sync_timeout_s: the reader is held back
        assert hit is not None and hit.index == 2  # 0.08 s; 0.12 s is past the camera's time
    finally:
        assert ev.stop(5)


def test_failures_never_reach_the_caller(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streetwatch.ingest.evidence")
    missing = EvidenceStream("cam", str(tmp_path / "nope.avi"), start=START).start()
    bad = EvidenceStream("cam", "ftp://example.invalid/x", start=START).start()
    for ev in (missing, bad):
        assert ev.stop(5)
        assert ev.ended and ev.failed and ev.error
        assert ev.latest(START, 1.0) is None  # at once: the reader has ended
    assert "event=evidence_error" in caplog.text

    video = write_video(tmp_path / "ok.avi", [np.zeros((48, 64, 3), np.uint8)] * 10)
    calls = 0

    def broken(frame: Frame) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("callback bug")

    ev = EvidenceStream("cam", str(video), start=START, pace="fast", on_frame=broken).start()
    ev.advance(START + timedelta(seconds=5))
    wait_until(lambda: ev.ended, "the end of the file", timeout=5, interval=0.01)
    assert ev.stop(5)
    assert ev.ended and not ev.failed
    assert ev.frames == calls == ev.callback_errors  # every frame read, the callback survived
    assert caplog.text.count("event=evidence_callback_failed") == 1  # logged once


@pytest.mark.integration
def test_a_live_mjpeg_main_stream_is_read_at_its_rate() -> None:
    jpegs = []
    for i in range(10):
        image = np.full((96, 128, 3), 20 * i, np.uint8)
        ok, buf = cv2.imencode(".jpg", image)
        assert ok
        jpegs.append(buf.tobytes())
    server = MjpegServer(jpegs, fps=20).start()
    got: list[Frame] = []
    lock = threading.Lock()

    def on_frame(frame: Frame) -> None:
        with lock:
            got.append(frame)

    ev = EvidenceStream("cam", server.url, start=START, on_frame=on_frame)
    assert not ev.follows_camera
    ev.start()
    try:
        wait_until(lambda: len(got) >= 30, "30 frames from the MJPEG server", timeout=15)
        assert len(got) >= 30, "fewer than 30 frames from the MJPEG server"
        now = datetime.now(UTC)
        hit = ev.latest(now, 0.5)  # stamped on the wall clock, like the sub-stream
        assert hit is not None and abs(hit.captured_at - now) <= timedelta(seconds=0.5)
        assert hit.image.shape == (96, 128, 3)
        with lock:
            span = (got[-1].captured_at - got[9].captured_at).total_seconds()
            rate = (len(got) - 10) / span
        assert 12 <= rate <= 30, rate  # every frame of the 20 fps stream, none skipped
        assert ev.latest(now - timedelta(seconds=30), 0.5) is None  # long gone from the ring
    finally:
        started = time.monotonic()
        assert ev.stop()
        server.stop()
    assert time.monotonic() - started < 7


# --- a camera with a main stream for evidence -----------------------------------------------


def camera_config(tmp: Path, sub: Path, main: Path | None) -> dict[str, Any]:
    cam: dict[str, Any] = {
        "camera_id": "cam-1",
        "url": str(sub),
        "analysis_fps": 2.0,
        "clip": {"pre_s": 3.0, "post_s": 3.0},
        "zones": [{"zone_id": "bay", "place": "bay", "polygon": BAY_SUB}],
        "rules": [
            {
                "type": "illegal_parking",
                "rule_id": "bay",
                "zone": "bay",
                "dwell_s": 10.0,
                "repeat_every_s": 60.0,
            }
        ],
    }
    if main is not None:
        cam["evidence_url"] = str(main)
    return {
        "edge": {"evidence_dir": str(tmp / "evidence")},
        "places": [{"place_id": "bay"}],
        "cameras": [cam],
    }


def run_edge(tmp: Path, sub: Path, main: Path | None, pace: str = "fast") -> list[Alert]:
    cfg = parse_config(camera_config(tmp, sub, main))
    sink = MemoryAlertSink()
    edge = EdgeWorker(cfg, sink, pace="fast" if pace == "fast" else "realtime")

    async def go() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(edge.run(stop))
        await asyncio.wait_for(edge.cameras_finished.wait(), 60)
        stop.set()
        await run

    asyncio.run(go())
    assert not edge.stats.camera_errors
    return sink.alerts


def evidence(alert: Alert, kind: EvidenceKind) -> Evidence:
    return next(e for e in alert.evidence if e.kind is kind)


def test_snapshot_and_clip_come_from_the_main_stream(
    tmp_path: Path, streams: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    main, sub = streams
    caplog.set_level(logging.INFO)
    alerts = run_edge(tmp_path, sub, main)
    assert alerts, "the parked van raised no alert on the sub-stream"
    alert = alerts[0]
    assert 10.0 <= (alert.observed_at - alert.first_seen).total_seconds() <= 11.0

    snap = evidence(alert, EvidenceKind.SNAPSHOT)
    image = cv2.imread(snap.path)
    assert image is not None and image.shape == (MAIN_SIZE[1], MAIN_SIZE[0], 3)
    assert abs(snap.captured_at - alert.observed_at) <= timedelta(seconds=0.1)
    # the zone, drawn at its scaled place: the middle of its bottom edge (sub 342,65)
    # and of its left edge (sub 300,46) at twice the coordinates ...
    assert colour_near(image, 684, 130, ZONE_COLOUR)
    assert colour_near(image, 600, 92, ZONE_COLOUR)
    # ... not at the sub-stream coordinates
    assert not colour_near(image, 342, 65, ZONE_COLOUR)
    # the boxes stay in sub-stream pixels in the alert, and are drawn scaled
    assert alert.detections
    for d in alert.detections:
        assert d.box.x2 <= SUB_SIZE[0] + 1 and d.box.y2 <= SUB_SIZE[1] + 1, d
        assert colour_near(image, 2 * d.box.x1, d.box.y1 + d.box.y2, FIRING_COLOUR), d

    clip = evidence(alert, EvidenceKind.CLIP)
    width, height, frames, rate = clip_shape_and_rate(clip.path)
    assert (width, height) == MAIN_SIZE
    assert 8.5 <= rate <= 11.5, rate  # the main file's 10 fps, not the analysed 2 fps
    assert frames >= 58  # 3 s before + 3 s after at 10 fps
    assert "event=evidence_frame_missing" not in caplog.text
    assert "evidence_fallbacks=0" in caplog.text


def test_realtime_pace_lines_the_streams_up_too(tmp_path: Path) -> None:
    frames = vtest_frames(5)
    main = write_video(tmp_path / "main.avi", frames)
    sub = write_video(
        tmp_path / "sub.avi",
        [cv2.resize(f, SUB_SIZE, interpolation=cv2.INTER_AREA) for f in frames],
    )
    data = camera_config(tmp_path, sub, main)
    rule = data["cameras"][0]["rules"][0]
    rule["dwell_s"] = 2.0
    data["cameras"][0]["clip"] = {"pre_s": 1.0, "post_s": 1.0}
    cfg = parse_config(data)
    sink = MemoryAlertSink()
    edge = EdgeWorker(cfg, sink, pace="realtime")

    async def go() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(edge.run(stop))
        await asyncio.wait_for(edge.cameras_finished.wait(), 30)
        stop.set()
        await run

    asyncio.run(go())
    assert sink.alerts
    alert = sink.alerts[0]
    image = cv2.imread(evidence(alert, EvidenceKind.SNAPSHOT).path)
    assert image is not None and image.shape == (MAIN_SIZE[1], MAIN_SIZE[0], 3)
    assert colour_near(image, 684, 130, ZONE_COLOUR)
    width, height, frames_n, rate = clip_shape_and_rate(evidence(alert, EvidenceKind.CLIP).path)
    assert (width, height) == MAIN_SIZE and 8.5 <= rate <= 11.5 and frames_n >= 15


def test_without_evidence_url_the_sub_stream_is_the_evidence(
    tmp_path: Path, streams: tuple[Path, Path]
) -> None:
    _, sub = streams
    alerts = run_edge(tmp_path, sub, None)
    assert alerts
    alert = alerts[0]
    image = cv2.imread(evidence(alert, EvidenceKind.SNAPSHOT).path)
    assert image is not None and image.shape == (SUB_SIZE[1], SUB_SIZE[0], 3)
    assert colour_near(image, 342, 65, ZONE_COLOUR)
    assert evidence(alert, EvidenceKind.SNAPSHOT).captured_at == alert.observed_at
    width, height, _, rate = clip_shape_and_rate(evidence(alert, EvidenceKind.CLIP).path)
    assert (width, height) == SUB_SIZE
    assert 1.5 <= rate <= 2.5, rate  # the analysed frames: analysis_fps 2
