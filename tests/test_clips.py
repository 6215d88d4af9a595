"""Evidence clips: pre-event ring buffer, H.264 MP4 writer, recorder, browser playback."""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from core.records import Evidence, EvidenceKind
from edge.clip_buffer import FRAME_OVERHEAD_BYTES, ClipBuffer
from edge.clip_recorder import ClipRecorder, ClipRefused
from edge.clip_writer import ClipInfo, ClipWriteError, write_clip
from ingest.frames import Frame
from tests.support.browser import chromium, probe_video, serve, write_video_page
from tests.support.factories import at

Image = npt.NDArray[np.uint8]
CAMERA = "cam-clips"


def noise(width: int, height: int, seed: int) -> Image:
    """Random pixels: the worst case for JPEG, so byte budgets are really tested."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def scene(width: int, height: int, i: int) -> Image:
    """A gradient with a moving box: cheap, compressible, visibly changing."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    x = (i * 7) % max(1, width - 40)
    cv2.rectangle(image, (x, height // 3), (x + 40, height // 3 + 40), (0, 0, 255), -1)
    return image


def frame(seconds: float, image: Image, index: int = 0) -> Frame:
    return Frame(CAMERA, index, seconds, at(seconds), image)


@dataclass(frozen=True)
class Probe:
    codec: str
    width: int
    height: int
    pix_fmt: str | None
    duration_s: float
    frame_times: list[float]


def probe(path: Path) -> Probe:
    """Read a clip back with PyAV: codec, size and every frame's time."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream) if f.time is not None]
        assert stream.duration is not None and stream.time_base is not None
        return Probe(
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            pix_fmt=stream.codec_context.pix_fmt,
            duration_s=float(stream.duration * stream.time_base),
            frame_times=times,
        )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ManualExecutor(Executor):
    """Runs submitted encodes only when told: makes 'encoder busy' deterministic."""

    def __init__(self) -> None:
        self.queue: list[tuple[Future[Any], Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.queue.append((future, lambda: fn(*args, **kwargs)))
        return future

    def run_all(self) -> int:
        done = 0
        while self.queue:
            future, call = self.queue.pop(0)
            future.set_result(call())
            done += 1
        return done


# -- (a) ring buffer ------------------------------------------------------------


def test_buffer_keeps_only_the_last_pre_seconds() -> None:
    buffer = ClipBuffer(pre_s=5.0, budget_bytes=64 << 20)
    for i in range(300):  # 12 s at 25 fps
        buffer.push(frame(i / 25, scene(160, 120, i), i))
        times = [f.captured_at for f in buffer]
        assert times[-1] - times[0] <= at(5.0) - at(0.0)
    assert len(buffer) == 126  # 5 s at 25 fps, both ends included
    assert next(iter(buffer)).captured_at == at(299 / 25 - 5.0)
    assert buffer.dropped_budget == 0
    assert buffer.bytes_used == sum(f.size_bytes for f in buffer)
    # frames not later than the newest are refused and counted
    assert buffer.push(frame(299 / 25, scene(160, 120, 0))) is None
    assert buffer.push(frame(1.0, scene(160, 120, 0))) is None
    assert buffer.dropped_out_of_order == 2
    assert len(buffer) == 126


def test_buffer_respects_its_byte_budget_and_counts_drops() -> None:
    budget = 2 << 20  # 2 MiB; noise 320x240 JPEGs are ~52 kB, 125 of them would be ~6.5 MB
    buffer = ClipBuffer(pre_s=5.0, budget_bytes=budget)
    ClipBuffer(pre_s=1.0, budget_bytes=budget).push(frame(0, noise(320, 240, 0)))  # warm-up
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        evicted_by_time = 0
        for i in range(400):
            before = len(buffer)
            dropped_before = buffer.dropped_budget
            buffer.push(frame(i / 25, noise(320, 240, i), i))
            assert buffer.bytes_used <= budget
            evicted_by_time += before + 1 - len(buffer) - (buffer.dropped_budget - dropped_before)
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    kept = list(buffer)
    assert buffer.pushed == 400
    assert buffer.dropped_budget > 200  # the budget, not the time window, is what bounds it
    assert evicted_by_time == 0  # the window never filled: every eviction was a counted drop
    assert buffer.dropped_budget + len(buffer) == 400
    assert budget - max(f.size_bytes for f in kept) < buffer.bytes_used <= budget
    assert buffer.bytes_used == sum(len(f.jpeg) + FRAME_OVERHEAD_BYTES for f in kept)
    # what the process really holds is what the buffer accounts for
    assert retained <= budget + (64 << 10), retained
    # the newest frames are the ones kept
    assert kept[-1].captured_at == at(399 / 25)


# -- (b) a clip from real frames --------------------------------------------------


@dataclass(frozen=True)
class RecordedClip:
    evidence: Evidence
    info: ClipInfo
    directory: Path
    encoded_on: str
    longest_push_s: float


@pytest.fixture(scope="module")
def vtest_clip(vtest_video: Path, tmp_path_factory: pytest.TempPathFactory) -> RecordedClip:
    """~15 s of vtest.avi fed at 5 fps, event at t=8 s, pre 5 s, post 5 s."""
    directory = tmp_path_factory.mktemp("clips")
    recorder = ClipRecorder(CAMERA, directory, pre_s=5.0, post_s=5.0)
    cap = cv2.VideoCapture(str(vtest_video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    assert fps == 10.0
    future: Future[Evidence] | None = None
    threads: list[str] = []
    longest_push = 0.0
    try:
        for index in range(150):  # 15 s
            ok, image = cap.read()
            assert ok, f"vtest.avi ended at frame {index}"
            if index % 2:  # 5 fps
                continue
            seconds = index / fps
            started = time.perf_counter()
            recorder.push(Frame(CAMERA, index, seconds, at(seconds), np.asarray(image)))
            longest_push = max(longest_push, time.perf_counter() - started)
            if index == 80:  # t = 8 s
                future = recorder.start("alert-vtest-8s", at(seconds))
                future.add_done_callback(lambda _: threads.append(threading.current_thread().name))
        assert future is not None
        evidence = future.result(timeout=120)
    finally:
        cap.release()
        recorder.close()
    assert recorder.stats.last_clip is not None
    return RecordedClip(evidence, recorder.stats.last_clip, directory, threads[0], longest_push)


def test_clip_from_real_frames_is_h264_with_real_timing(vtest_clip: RecordedClip) -> None:
    evidence, info = vtest_clip.evidence, vtest_clip.info
    path = Path(evidence.path)
    assert evidence.kind is EvidenceKind.CLIP
    assert evidence.media_type == "video/mp4"
    assert path.is_file() and path.name == "alert-vtest-8s.mp4"
    assert sha256_of(path) == evidence.sha256 == info.sha256
    assert evidence.captured_at == at(3.0)  # clip time 0 = its first frame
    assert not list(path.parent.glob(".*.part"))  # nothing half-written left behind
    clip = probe(path)
    assert clip.codec == "h264"
    assert clip.pix_fmt == "yuv420p"
    assert (clip.width, clip.height) == (768, 576)
    assert clip.duration_s == pytest.approx(10.0, abs=1.0)
    assert len(clip.frame_times) == info.frames == 51  # 3.0 .. 13.0 s at 5 fps
    assert clip.frame_times == pytest.approx([i / 5 for i in range(51)], abs=0.002)
    # the encode ran on the recorder's worker thread, not the camera loop
    assert vtest_clip.encoded_on.startswith(f"clip-{CAMERA}")
    assert vtest_clip.longest_push_s < 0.5
    print(
        f"\nvtest clip: {info.frames} frames, {info.duration_s:.2f}s, {info.size_bytes} bytes, "
        f"encoded in {info.encode_s:.2f}s; slowest push {vtest_clip.longest_push_s * 1000:.1f}ms"
    )


# -- (c) the clip plays in headless Chromium --------------------------------------


@pytest.mark.integration
def test_clip_plays_in_headless_chromium(vtest_clip: RecordedClip, tmp_path: Path) -> None:
    odd = write_clip(((at(i / 10), scene(641, 361, i)) for i in range(30)), tmp_path / "odd.mp4")
    vtest_name = Path(vtest_clip.evidence.path).name
    (tmp_path / vtest_name).write_bytes(Path(vtest_clip.evidence.path).read_bytes())
    pages = {
        "vtest": write_video_page(tmp_path, vtest_name, "vtest.html"),
        "odd": write_video_page(tmp_path, odd.path.name, "odd.html"),
    }
    with serve(tmp_path) as base_url, chromium() as browser:
        vtest = probe_video(browser, base_url, pages["vtest"], play_s=1.0)
        odd_state = probe_video(browser, base_url, pages["odd"], play_s=0.5)
    print(f"\nchromium: {vtest}\nchromium: {odd_state}")
    assert vtest.error is None
    assert vtest.ready_state >= 2
    assert vtest.duration == pytest.approx(10.0, abs=1.0)
    assert (vtest.video_width, vtest.video_height) == (768, 576)
    assert vtest.played_to >= 1.0  # frames were decoded and time advanced
    assert odd_state.error is None and odd_state.ready_state >= 2
    assert (odd_state.video_width, odd_state.video_height) == (642, 362)
    assert odd_state.duration == pytest.approx(3.0, abs=0.2)


# -- (d) odd frame sizes, size changes, real timing -------------------------------


def test_odd_frame_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = [(at(i / 10), scene(641, 361, i)) for i in range(20)]
    frames[10] = (frames[10][0], scene(320, 180, 10))  # a size change mid-clip is resized
    info = write_clip(iter(frames), tmp_path / "odd.mp4")
    clip = probe(info.path)
    assert (info.width, info.height) == (clip.width, clip.height) == (642, 362)
    assert clip.codec == "h264" and len(clip.frame_times) == 20
    assert sha256_of(info.path) == info.sha256
    with av.open(str(info.path)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert image.shape == (362, 642, 3)
    # the padding repeats the edge: last column/row look like their neighbours
    edge = np.abs(image[:, -1].astype(int) - image[:, -2].astype(int)).mean()
    assert edge < 8, edge
    assert np.abs(image[-1].astype(int) - image[-2].astype(int)).mean() < 8


def test_variable_frame_rate_keeps_real_timing(tmp_path: Path) -> None:
    # 2 fps, then a 3 s stall, then bursts: the player must show each at its time
    offsets = [0.0, 0.5, 1.0, 1.5, 4.5, 4.6, 4.7, 5.2, 7.0]
    info = write_clip(
        ((at(10 + s), scene(320, 240, i)) for i, s in enumerate(offsets)), tmp_path / "vfr.mp4"
    )
    clip = probe(info.path)
    assert clip.frame_times == pytest.approx(offsets, abs=0.002)
    assert info.duration_s == pytest.approx(7.5)  # the last frame lasts the median gap (0.5 s)
    assert clip.duration_s == pytest.approx(7.5, abs=0.01)


def test_write_failures_raise_clip_write_error_and_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ClipWriteError, match="no frames"):
        write_clip(iter([]), tmp_path / "empty.mp4")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ClipWriteError, match="cannot write clip"):
        write_clip([(at(0), scene(64, 48, 0))], blocker / "clip.mp4")
    bad = np.zeros((48, 64), np.uint8)  # not BGR
    with pytest.raises(ClipWriteError, match="BGR"):
        write_clip([(at(0), bad)], tmp_path / "gray.mp4")
    backwards = [(at(1), scene(64, 48, 0)), (at(0), scene(64, 48, 1))]
    with pytest.raises(ClipWriteError, match="backwards"):
        write_clip(backwards, tmp_path / "backwards.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


def test_recorder_reports_failures_through_the_future(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recorder = ClipRecorder(CAMERA, blocker / "clips", pre_s=1.0, post_s=0.5)
    try:
        recorder.push(frame(0.0, scene(64, 48, 0)))
        recorder.push(Frame(CAMERA, 1, 0.1, at(0.1), np.zeros((4, 4), np.uint8)))  # bad frame
        future = recorder.start("alert-fails", at(0.0))
        for i in range(1, 10):
            recorder.push(frame(i / 10 + 0.05, scene(64, 48, i)))  # never raises
        with pytest.raises(ClipWriteError):
            future.result(timeout=60)
    finally:
        recorder.close()
    assert recorder.stats.failed == 1 and recorder.stats.frame_errors == 1


# -- (e) overlapping events -------------------------------------------------------


def test_overlapping_events_record_merge_and_refuse(tmp_path: Path) -> None:
    encoder = ManualExecutor()
    recorder = ClipRecorder(
        CAMERA,
        tmp_path,
        pre_s=2.0,
        post_s=2.0,
        max_in_flight=2,
        max_clip_s=5.0,
        executor=encoder,
    )
    events = {
        3.0: "alert-a",  # recording a: 1.0 .. 5.0
        4.0: "alert-b",  # recording b: 2.0 .. 6.0 (two in flight now)
        4.5: "alert-c",  # beyond the limit: merged into b, which now ends at 6.5
        6.0: "alert-d",  # a is encoding, b would become 2.0 .. 8.0 > 5 s: refused
        7.0: "alert-e",  # a and b both waiting for the encoder: refused (busy)
        9.0: "alert-f",  # after the encoder caught up: a new recording
    }
    futures: dict[str, Future[Evidence]] = {}
    for i in range(121):  # 0 .. 12 s at 10 fps
        seconds = i / 10
        if seconds == 9.0:
            assert encoder.run_all() == 2
        recorder.push(frame(seconds, scene(160, 120, i), i))
        if seconds in events:
            futures[events[seconds]] = recorder.start(events[seconds], at(seconds))
        if seconds == 4.5:
            assert recorder.start("alert-b", at(seconds)) is futures["alert-b"]  # idempotent
    assert encoder.run_all() == 1
    recorder.close()

    a, b, c, f = (
        futures[k].result(timeout=0) for k in ("alert-a", "alert-b", "alert-c", "alert-f")
    )
    assert c == b  # the merged event shares b's clip
    for name in ("alert-d", "alert-e"):
        with pytest.raises(ClipRefused) as refused:
            futures[name].result(timeout=0)
        assert refused.value.event_id == name
    assert futures["alert-d"].exception() is not None
    assert str(futures["alert-d"].exception()).find("too_long") > 0
    assert str(futures["alert-e"].exception()).find("busy") > 0
    stats = recorder.stats
    assert (stats.started, stats.merged, stats.written, stats.failed) == (3, 1, 3, 0)
    assert dict(stats.refused) == {"too_long": 1, "busy": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alert-a.mp4",
        "alert-b.mp4",
        "alert-f.mp4",
    ]
    spans = {"alert-a": (1.0, 5.0), "alert-b": (2.0, 6.5), "alert-f": (7.0, 11.0)}
    for evidence, name in ((a, "alert-a"), (b, "alert-b"), (f, "alert-f")):
        first, last = spans[name]
        clip = probe(Path(evidence.path))
        assert evidence.captured_at == at(first)
        assert sha256_of(Path(evidence.path)) == evidence.sha256
        assert len(clip.frame_times) == round((last - first) * 10) + 1
        assert clip.duration_s == pytest.approx(last - first + 0.1, abs=0.01)


def test_flush_ends_recordings_at_end_of_stream(tmp_path: Path) -> None:
    recorder = ClipRecorder(CAMERA, tmp_path, pre_s=1.0, post_s=5.0)
    for i in range(20):
        recorder.push(frame(i / 10, scene(96, 64, i), i))
    future = recorder.start("alert-eos", at(1.9))
    recorder.close()  # the stream ended 0.1 s after the event
    evidence = future.result(timeout=60)
    assert probe(Path(evidence.path)).frame_times == pytest.approx(
        [i / 10 for i in range(11)], abs=0.002
    )
    assert recorder.start("alert-late", at(2.0)).exception(timeout=0) is not None
