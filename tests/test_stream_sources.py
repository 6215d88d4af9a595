"""Live frame sources against real servers: RTSP (GStreamer) and HTTP MJPEG.

The RTSP server is ``tests/support/rtsp_server.py`` run under Debian's python3 (it
needs GStreamer's Python bindings); it loops ``vtest.avi`` (768x576, 10 fps)
over RTSP/TCP. Each test starts its own server on a free port and kills,
pauses or restarts it to provoke reconnects and stalls. Every wait is
bounded; a failed wait names what it waited for and the statuses seen.
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from ingest.backoff import Backoff, BackoffPolicy
from ingest.frames import Frame, FrameSource, SourceError, SourceState, SourceStatus
from ingest.open_source import open_source
from ingest.stream_source import StreamOptions, StreamSource
from ingest.video_file import VideoFileSource
from streetwatch.processes import free_port
from tests.support.mjpeg_server import MjpegServer
from tests.support.rtsp import RtspServer

VTEST_SHAPE = (576, 768, 3)

# Short timeouts and delays so that every scenario fits in a few seconds.
FAST = StreamOptions(
    open_timeout_s=3.0,
    read_timeout_s=2.0,
    backoff=BackoffPolicy(min_s=0.2, max_s=1.0, factor=2.0, jitter=0.2),
)


# --- running a source in a thread ------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What the test keeps of a frame (not the image: memory stays flat)."""

    index: int
    position_s: float
    captured_at: datetime
    shape: tuple[int, ...]
    mean: float


class Reader:
    """Consumes ``frames()`` on a thread, recording frames and status changes."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.seen: list[Seen] = []
        self.statuses: list[SourceStatus] = []
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def on_status(self, status: SourceStatus) -> None:
        with self._changed:
            self.statuses.append(status)
            self._changed.notify_all()

    def start(self, source: FrameSource) -> Reader:
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True)
        self._thread.start()
        return self

    def _run(self, source: FrameSource) -> None:
        try:
            for frame in source.frames():
                self._keep(frame)
        except BaseException as exc:
            self.error = exc
        finally:
            with self._changed:
                self._changed.notify_all()

    def _keep(self, frame: Frame) -> None:
        seen = Seen(
            frame.index,
            frame.position_s,
            frame.captured_at,
            frame.image.shape,
            float(frame.image.mean()),
        )
        with self._changed:
            self.seen.append(seen)
            self._changed.notify_all()

    def states(self, since: int = 0) -> list[SourceState]:
        with self._changed:
            return [s.state for s in self.statuses[since:]]

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        """Wait for ``predicate``; return the seconds it took, fail after ``timeout``."""
        started = time.monotonic()
        deadline = started + timeout
        with self._changed:
            while not predicate():
                if self.error is not None:
                    raise AssertionError(f"the source raised while waiting for {what}") from (
                        self.error
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"timed out after {timeout}s waiting for {what}; frames={len(self.seen)}"
                        f" statuses={[(s.state.value, s.detail) for s in self.statuses]}"
                    )
                self._changed.wait(min(left, 0.1))
        return time.monotonic() - started

    def frames_at_least(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.seen) >= n

    def close(self, timeout: float = 10.0) -> float:
        """Set stop and join the thread; return how long stopping took."""
        started = time.monotonic()
        self.stop.set()
        assert self._thread is not None
        self._thread.join(timeout)
        took = time.monotonic() - started
        assert not self._thread.is_alive(), f"source still running {timeout}s after stop"
        assert self.error is None, f"the source raised {self.error!r}"
        return took


@pytest.fixture
def reader() -> Iterator[Reader]:
    r = Reader()
    yield r
    r.stop.set()  # a failing test must not leave a camera thread behind


def live_source(
    reader: Reader, url: str, analysis_fps: float, options: StreamOptions = FAST
) -> FrameSource:
    return open_source(
        "cam-test",
        url,
        analysis_fps,
        pace="realtime",
        start=datetime.now(UTC),
        loop=False,
        stop=reader.stop,
        on_status=reader.on_status,
        options=options,
    )


# --- (a) frames from RTSP --------------------------------------------------------------------


@pytest.mark.integration
def test_rtsp_frames_arrive_at_the_analysis_rate(rtsp_server: RtspServer, reader: Reader) -> None:
    # the first open waits as long as a camera's default: the test server starts a
    # decoder and an encoder per client, which on two busy cores can take over the
    # 3 s the reconnection tests allow (each retry then starts another one)
    first_open = replace(FAST, open_timeout_s=StreamOptions().open_timeout_s)
    source = live_source(reader, rtsp_server.url, analysis_fps=5, options=first_open)
    assert isinstance(source, StreamSource)
    reader.start(source)
    reader.wait_until("12 frames", reader.frames_at_least(12), 30)
    reader.close()

    seen = reader.seen
    assert all(s.shape == VTEST_SHAPE for s in seen)
    assert all(s.mean > 10 for s in seen), "frames should show the scene, not a blank picture"
    for a, b in itertools.pairwise(seen):
        assert b.index > a.index
        assert b.captured_at > a.captured_at
        assert b.position_s - a.position_s >= 1 / 5 - 1e-9  # never faster than analysis_fps
    steady = seen[2:]  # the first reads drain what buffered while the stream was probed
    rate = (len(steady) - 1) / (steady[-1].position_s - steady[0].position_s)
    assert 2.5 <= rate <= 5.0 + 1e-6, f"analysed {rate:.2f} frames/s, want about 5"
    assert source.frames_decoded >= 1.5 * source.frames_yielded  # 10 fps decoded, 5 analysed
    assert source.frames_yielded == len(seen)
    assert (source.reconnects, source.stalls) == (0, 0)
    assert reader.states()[:2] == [SourceState.CONNECTING, SourceState.STREAMING]
    assert reader.states()[-1] is SourceState.STOPPED


# --- (b) server killed and restarted ---------------------------------------------------------


@pytest.mark.integration
def test_rtsp_reconnects_after_the_server_restarts(rtsp_server: RtspServer, reader: Reader) -> None:
    source = live_source(reader, rtsp_server.url, analysis_fps=5)
    reader.start(source)
    reader.wait_until("first frames", reader.frames_at_least(3), 20)

    rtsp_server.kill()
    mark = len(reader.statuses)
    reader.wait_until(
        "a reconnect attempt", lambda: SourceState.RECONNECTING in reader.states(mark), 10
    )
    time.sleep(1.0)  # let a few attempts fail against the closed port
    before = len(reader.seen)
    rtsp_server.start()  # same port
    reader.wait_until("frames after the restart", reader.frames_at_least(before + 3), 20)
    reader.close()

    assert source.reconnects >= 1
    assert source.stalls == 0  # a vanished server is a lost stream, not a stall
    states = reader.states(mark)
    assert SourceState.STREAMING in states[states.index(SourceState.RECONNECTING) :]
    assert all(s.shape == VTEST_SHAPE for s in reader.seen)
    indexes = [s.index for s in reader.seen]
    assert indexes == sorted(set(indexes)), "frame indexes keep growing across reconnects"


# --- (c) stalled stream ----------------------------------------------------------------------


@pytest.mark.integration
def test_rtsp_stall_is_detected_and_recovered(rtsp_server: RtspServer, reader: Reader) -> None:
    source = live_source(reader, rtsp_server.url, analysis_fps=5)
    reader.start(source)
    reader.wait_until("first frames", reader.frames_at_least(3), 20)

    mark = len(reader.statuses)
    rtsp_server.signal(signal.SIGSTOP)  # connection stays open, nothing more arrives
    try:
        took = reader.wait_until(
            "a stall", lambda: SourceState.STALLED in reader.states(mark), FAST.read_timeout_s + 4
        )
    finally:
        rtsp_server.signal(signal.SIGCONT)
    assert took <= FAST.read_timeout_s + 2.5, f"stall noticed after {took:.1f}s"
    assert source.stalls >= 1

    before = len(reader.seen)
    reader.wait_until("frames after the stall", reader.frames_at_least(before + 3), 20)
    reader.close()
    states = reader.states(mark)
    after_stall = states[states.index(SourceState.STALLED) :]
    assert after_stall[1] is SourceState.RECONNECTING
    assert SourceState.STREAMING in after_stall
    assert source.reconnects >= 1


# --- (d) HTTP MJPEG --------------------------------------------------------------------------


def _jpegs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        image = np.full((240, 320, 3), 40 + 20 * i, np.uint8)
        cv2.putText(image, str(i), (120, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
        ok, jpeg = cv2.imencode(".jpg", image)
        assert ok
        out.append(jpeg.tobytes())
    return out


@pytest.mark.integration
def test_http_mjpeg_frames_are_read(reader: Reader) -> None:
    server = MjpegServer(_jpegs(8), fps=20).start()
    try:
        source = live_source(reader, server.url, analysis_fps=4)
        assert isinstance(source, StreamSource)
        reader.start(source)
        reader.wait_until("8 frames", reader.frames_at_least(8), 15)
        reader.close()
    finally:
        server.stop()
    assert all(s.shape == (240, 320, 3) for s in reader.seen)
    assert len({round(s.mean) for s in reader.seen}) > 1, "the picture should change"
    gaps = [b.position_s - a.position_s for a, b in itertools.pairwise(reader.seen)]
    assert min(gaps) >= 1 / 4 - 1e-9
    assert source.frames_decoded > source.frames_yielded
    assert source.stalls == 0


# --- (e) unreachable camera ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_unreachable_camera_is_retried_with_growing_delays(scheme: str, reader: Reader) -> None:
    policy = BackoffPolicy(min_s=0.1, max_s=0.8, factor=2.0, jitter=0.25)
    source = StreamSource(
        "cam-gone",
        f"{scheme}://127.0.0.1:{free_port()}/cam",  # nothing listens there
        5,
        stop=reader.stop,
        on_status=reader.on_status,
        options=StreamOptions(open_timeout_s=2, read_timeout_s=2, backoff=policy),
        rng=random.Random(1),
    )
    reader.start(source)

    def retries() -> list[SourceStatus]:
        return [s for s in reader.statuses if s.state is SourceState.RECONNECTING]

    reader.wait_until("5 retries", lambda: len(retries()) >= 5, 15)
    took = reader.close()

    assert took < 1.0, f"stopping took {took:.2f}s"
    assert reader.seen == []
    delays = [s.retry_in_s or 0.0 for s in retries()]
    for i, delay in enumerate(delays[:5]):
        low, high = policy.bounds(i)
        assert low <= delay <= high, (i, delay)
    assert delays[:4] == sorted(delays[:4]) and len(set(delays[:4])) == 4, delays
    assert all(s.detail == "cannot open stream" for s in retries())
    assert [s.failures for s in retries()[:5]] == [1, 2, 3, 4, 5]
    assert source.reconnects >= 4 and source.frames_decoded == 0
    assert reader.states()[-1] is SourceState.STOPPED


def test_a_failing_status_callback_does_not_stop_the_source() -> None:
    stop = threading.Event()
    calls: list[SourceState] = []

    def broken(status: SourceStatus) -> None:
        calls.append(status.state)
        raise RuntimeError("health hook broke")

    source = StreamSource(
        "cam-gone",
        f"rtsp://127.0.0.1:{free_port()}/cam",
        5,
        stop=stop,
        on_status=broken,
        options=StreamOptions(backoff=BackoffPolicy(min_s=0.05, max_s=0.05)),
    )
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        assert list(source.frames()) == []
    finally:
        timer.cancel()
    assert calls.count(SourceState.RECONNECTING) >= 3
    assert calls[-1] is SourceState.STOPPED


# --- (f) backoff -----------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_within_jitter_bounds_and_resets() -> None:
    policy = BackoffPolicy(min_s=1.0, max_s=8.0, factor=2.0, jitter=0.25)
    assert [policy.bounds(i) for i in range(6)] == [
        (0.75, 1.0),
        (1.5, 2.0),
        (3.0, 4.0),
        (6.0, 8.0),
        (6.0, 8.0),
        (6.0, 8.0),
    ]
    assert policy.bounds(10_000) == (6.0, 8.0)  # no overflow however long the outage

    backoff = Backoff(policy, random.Random(42))
    delays = [backoff.next_delay() for _ in range(200)]
    for i, delay in enumerate(delays):
        low, high = policy.bounds(i)
        assert low <= delay <= high
    assert max(delays) <= policy.max_s
    assert len({round(d, 6) for d in delays[3:]}) > 100, "jitter spreads the capped delays"

    again = Backoff(policy, random.Random(42))
    assert [again.next_delay() for _ in range(200)] == delays  # seeded: reproducible
    again.reset()
    assert again.failures == 0 and 0.75 <= again.next_delay() <= 1.0

    exact = Backoff(BackoffPolicy(min_s=0.5, max_s=3.0, factor=3.0, jitter=0.0))
    assert [exact.next_delay() for _ in range(4)] == [0.5, 1.5, 3.0, 3.0]


@pytest.mark.parametrize(
    "kwargs",
    [{"min_s": 0}, {"min_s": 2, "max_s": 1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_backoff_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


# --- open_source -----------------------------------------------------------------------------


def _open(url: str, stop: threading.Event) -> FrameSource:
    return open_source("cam-1", url, 2, pace="fast", start=datetime.now(UTC), loop=False, stop=stop)


def test_open_source_picks_the_source_by_url(vtest_video: Path) -> None:
    stop = threading.Event()
    for url in (str(vtest_video), vtest_video.as_uri(), f"file://localhost{vtest_video}"):
        source = _open(url, stop)
        assert isinstance(source, VideoFileSource), url
        assert source.path == vtest_video
    for url in ("rtsp://cam/1", "RTSPS://cam/1", "http://cam/v.mjpg", "https://cam/v.mjpg"):
        assert isinstance(_open(url, stop), StreamSource), url


def test_a_file_source_counts_like_a_live_one(vtest_video: Path) -> None:
    source = _open(str(vtest_video), threading.Event())
    frames = []
    for frame in source.frames():
        frames.append(frame.index)
        if len(frames) == 3:
            break
    assert (source.frames_yielded, source.reconnects, source.stalls) == (3, 0, 0)
    assert source.frames_decoded > source.frames_yielded


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://cam/1.mp4", "unsupported URL scheme 'ftp'"),
        ("udp://admin:s3cret@239.0.0.1:1234", "unsupported URL scheme 'udp'"),
        ("file://nas/videos/cam.mp4", "only local file: URLs are supported"),
    ],
)
def test_open_source_rejects_unknown_schemes(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as err:
        _open(url, threading.Event())
    assert "cam-1" in str(err.value) and "s3cret" not in str(err.value)
    assert "rtsp://" in str(err.value)


def test_a_missing_file_is_still_an_error() -> None:
    with pytest.raises(SourceError, match="video file not found"):
        _open("/nonexistent/cam.mp4", threading.Event())


def test_a_stream_source_refuses_a_non_stream_url() -> None:
    with pytest.raises(SourceError, match="not a stream URL"):
        StreamSource("cam-1", "/videos/cam.mp4", 5)
