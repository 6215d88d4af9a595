"""A live camera (RTSP or HTTP MJPEG) read as an endless, self-healing frame source.

Reading is done by OpenCV's bundled FFmpeg (``cv2.CAP_FFMPEG``).

**Why timeouts.** A network camera fails in two ways: it refuses or drops
the connection (FFmpeg returns an error at once), or it goes silent while the
TCP connection stays open (a frozen encoder, a stuck NVR, a half-dead link).
Without a timeout the second case blocks ``grab()`` forever: the camera
thread hangs, never reconnects and never notices ``stop``. OpenCV installs an
FFmpeg interrupt callback driven by ``CAP_PROP_OPEN_TIMEOUT_MSEC`` (connect,
RTSP handshake, stream probing) and ``CAP_PROP_READ_TIMEOUT_MSEC`` (each
``grab()``); when one expires FFmpeg aborts the blocking call and ``grab()``
returns ``False``. Both are passed when the capture is opened (reading them
back with ``cap.get`` returns -1 in OpenCV 5.0; they work nonetheless).

**How a stall is detected.** ``grab()`` is timed with the monotonic clock.
If it blocked for about the read timeout (``>= 0.9 x``), no frame arrived
for that long: that is a *stall* — counted in ``stalls``, logged as
``event=stream_stalled`` and reported as ``SourceState.STALLED``. This holds
even when that ``grab()`` returns ``True``: an interrupted RTSP read can hand
back a truncated packet that "decodes" (seen with OpenCV 5.0's FFmpeg), and
that frame is not trusted. A ``grab()`` that fails sooner means the stream
ended or broke (server gone, connection reset). Either way the capture is
released and the source reconnects. So the read timeout must be longer than
the camera's frame interval (5 s by default; raise it for a camera that
sends a picture every few seconds).

**Reconnects** wait with exponential backoff plus jitter
(:mod:`ingest.backoff`), forever, until ``stop`` is set; the wait is
``stop.wait(delay)``, so stopping is immediate between attempts and takes at
most the open or read timeout while FFmpeg is blocked. The backoff is reset
by the first frame decoded after a reconnect. Nothing here raises for a bad
URL or an unreachable host: it is retried and reported through the status
callback and the log (with any password in the URL masked).

**Live pacing.** Every frame is decoded with ``grab()`` — skipping reads
would let the server's packets pile up and the picture fall behind real
time — but only frames at least ``1 / analysis_fps`` seconds (monotonic)
after the last analysed one are converted to BGR (``retrieve()``) and
yielded. ``captured_at`` is the UTC wall clock at the moment ``grab()``
returned, ``position_s`` the monotonic time since ``frames()`` first
connected; both keep growing across reconnects, as does ``Frame.index``.
If analysis is slower than the camera, frames queue up in the socket and
are drained (decoded, not analysed) on the next reads, so timestamps then
lag the real capture time by that backlog.

**FFmpeg options** (``OPENCV_FFMPEG_CAPTURE_OPTIONS``) are process-wide
and read by OpenCV at each open: unless the operator set them, the first
StreamSource sets :data:`DEFAULT_FFMPEG_OPTIONS` — RTSP over TCP
(interleaved; survives NAT and packet loss without smeared frames) and a
1 s ``analyzeduration`` so opening does not read ~3 s of stream first.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, auto
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from ingest.backoff import Backoff, BackoffPolicy
from ingest.frames import Frame, SourceError, SourceState, SourceStatus, StatusCallback

log = logging.getLogger("streetwatch.ingest.stream")

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
DEFAULT_FFMPEG_OPTIONS = "rtsp_transport;tcp|analyzeduration;1000000"
STALL_SHARE = 0.9  # a grab that blocked this share of the read timeout is a stall

_env_lock = threading.Lock()


@dataclass(frozen=True)
class StreamOptions:
    open_timeout_s: float = 10.0  # connect + handshake + probing
    read_timeout_s: float = 5.0  # silence on an open stream before it counts as a stall
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("stream timeouts must be positive")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and status records."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def ensure_ffmpeg_options() -> str:
    """Set the default FFmpeg capture options unless the operator set some; return them."""
    with _env_lock:
        if FFMPEG_OPTIONS_ENV not in os.environ:
            os.environ[FFMPEG_OPTIONS_ENV] = DEFAULT_FFMPEG_OPTIONS
        return os.environ[FFMPEG_OPTIONS_ENV]


class _End(Enum):
    STOPPED = auto()  # stop was set
    LOST = auto()  # the stream ended or broke
    STALLED = auto()  # a read timed out


class StreamSource:
    """Frames from an ``rtsp://``, ``rtsps://``, ``http://`` or ``https://`` camera."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        analysis_fps: float,
        *,
        stop: threading.Event | None = None,
        on_status: StatusCallback | None = None,
        options: StreamOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in STREAM_SCHEMES:
            raise SourceError(
                f"camera {camera_id}: not a stream URL (want {'/'.join(sorted(STREAM_SCHEMES))}):"
                f" {redact_url(url)}"
            )
        if not analysis_fps > 0:
            raise SourceError(f"camera {camera_id}: analysis_fps must be > 0, got {analysis_fps}")
        self.camera_id = camera_id
        self.url = url
        self.analysis_fps = analysis_fps
        self.stop = stop or threading.Event()
        self.on_status = on_status
        self.options = options or StreamOptions()
        self.rng = rng or random.Random()
        self.frames_decoded = 0
        self.frames_yielded = 0
        self.reconnects = 0
        self.stalls = 0
        self.open_failures = 0
        self.state: SourceState | None = None
        self._safe_url = redact_url(url)

    def frames(self) -> Iterator[Frame]:
        """Yield analysed frames until ``stop`` is set, reconnecting whenever needed."""
        ensure_ffmpeg_options()
        backoff = Backoff(self.options.backoff, self.rng)
        epoch: float | None = None  # monotonic time of the first successful open
        attempts = 0
        try:
            while not self.stop.is_set():
                if attempts:
                    self.reconnects += 1
                attempts += 1
                self._report(SourceState.CONNECTING, failures=backoff.failures)
                cap = self._open()
                if cap is None:
                    self.open_failures += 1
                    self._retry(backoff, "cannot open stream")
                    continue
                try:
                    if epoch is None:
                        epoch = time.monotonic()
                    end = yield from self._read(cap, backoff, epoch)
                finally:
                    cap.release()
                if end is _End.STOPPED:
                    break
                self._retry(backoff, "stalled" if end is _End.STALLED else "stream ended")
        finally:
            self._report(SourceState.STOPPED)
            log.info(
                "event=stream_stopped camera=%s decoded=%d analysed=%d reconnects=%d stalls=%d",
                self.camera_id,
                self.frames_decoded,
                self.frames_yielded,
                self.reconnects,
                self.stalls,
            )

    def _open(self) -> cv2.VideoCapture | None:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            round(self.options.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            round(self.options.read_timeout_s * 1000),
        ]
        started = time.monotonic()
        try:
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        except cv2.error as exc:
            log.warning("event=stream_open_error camera=%s error=%s", self.camera_id, exc)
            return None
        if cap.isOpened():
            log.info(
                "event=stream_opened camera=%s url=%s in_s=%.2f",
                self.camera_id,
                self._safe_url,
                time.monotonic() - started,
            )
            return cap
        cap.release()
        log.warning(
            "event=stream_open_failed camera=%s url=%s after_s=%.2f",
            self.camera_id,
            self._safe_url,
            time.monotonic() - started,
        )
        return None

    def _read(
        self, cap: cv2.VideoCapture, backoff: Backoff, epoch: float
    ) -> Generator[Frame, None, _End]:
        """Decode from one open capture until it fails or ``stop`` is set."""
        period = 1.0 / self.analysis_fps
        last_analysed: float | None = None
        streaming = False
        while not self.stop.is_set():
            started = time.monotonic()
            ok = cap.grab()
            grabbed = time.monotonic()
            if not ok or grabbed - started >= STALL_SHARE * self.options.read_timeout_s:
                return self._failed_read(grabbed - started)
            captured_at = datetime.now(UTC)
            self.frames_decoded += 1
            if not streaming:
                streaming = True
                backoff.reset()
                self._report(SourceState.STREAMING)
            if last_analysed is not None and grabbed - last_analysed < period:
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                continue
            last_analysed = grabbed
            self.frames_yielded += 1
            yield Frame(
                camera_id=self.camera_id,
                index=self.frames_decoded - 1,
                position_s=grabbed - epoch,
                captured_at=captured_at,
                image=np.asarray(image, dtype=np.uint8),
            )
        return _End.STOPPED

    def _failed_read(self, blocked_s: float) -> _End:
        if self.stop.is_set():
            return _End.STOPPED
        if blocked_s >= STALL_SHARE * self.options.read_timeout_s:
            self.stalls += 1
            log.warning(
                "event=stream_stalled camera=%s url=%s blocked_s=%.2f read_timeout_s=%.2f",
                self.camera_id,
                self._safe_url,
                blocked_s,
                self.options.read_timeout_s,
            )
            self._report(SourceState.STALLED, f"no data for {blocked_s:.1f}s")
            return _End.STALLED
        log.warning(
            "event=stream_lost camera=%s url=%s after_s=%.2f",
            self.camera_id,
            self._safe_url,
            blocked_s,
        )
        return _End.LOST

    def _retry(self, backoff: Backoff, why: str) -> None:
        delay = backoff.next_delay()
        log.warning(
            "event=stream_reconnecting camera=%s url=%s reason=%r retry_in_s=%.2f failures=%d",
            self.camera_id,
            self._safe_url,
            why,
            delay,
            backoff.failures,
        )
        self._report(SourceState.RECONNECTING, why, retry_in_s=delay, failures=backoff.failures)
        self.stop.wait(delay)

    def _report(
        self,
        state: SourceState,
        detail: str = "",
        *,
        retry_in_s: float | None = None,
        failures: int = 0,
    ) -> None:
        self.state = state
        if self.on_status is None:
            return
        status = SourceStatus(
            camera_id=self.camera_id,
            state=state,
            at=datetime.now(UTC),
            detail=detail,
            retry_in_s=retry_in_s,
            failures=failures,
        )
        try:
            self.on_status(status)
        except Exception:  # a broken health hook must not kill the camera
            log.exception("event=status_callback_failed camera=%s", self.camera_id)
