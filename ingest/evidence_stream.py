"""A camera's main stream, read beside the analysed sub-stream, for evidence.

Cameras usually offer two streams: a low-resolution *sub-stream*, cheap to
decode and analyse (the camera's ``url``), and the full-resolution, full
frame rate *main stream* (``evidence_url``). An :class:`EvidenceStream`
reads the main stream in its own thread so that snapshots and clips show
what a reviewer needs to see (a plate, the goods of a stall) while the
detector keeps working on the small picture.

**Reading.** The stream is opened with :func:`ingest.open_source.open_source`,
so files, RTSP and HTTP MJPEG all work, with the live sources' timeouts,
stall detection and reconnects. Every frame is decoded (``analysis_fps`` is
:data:`EVERY_FRAME_FPS`, far above any camera's rate): a file is read at
its own frame rate (``pace="realtime"``) or as fast as allowed
(``pace="fast"``), a live stream at the camera's rate. Each frame goes to
the optional ``on_frame`` callback (the camera worker passes
``ClipRecorder.push``, so clips get every main-stream frame) and into a
small ring of recent frames.

**Looking a frame up.** :meth:`EvidenceStream.latest` returns the ring's
frame whose ``captured_at`` is closest to the analysed frame's, or ``None``
if none is within ``max_skew_s``. Both streams must therefore be stamped on
the same clock: a live stream is stamped with the wall clock as it is read
(like the sub-stream), a file with ``start + position`` — give both files
the same ``start``.

**Keeping the two in step (the file-pace choice).** A live main stream is
never held back: it runs at the camera's pace, the ring covers the last
``window_s`` seconds, and ``latest()`` waits at most ``max_skew_s`` for a
frame at or after the asked time (the main stream may arrive a little later
than the sub-stream) before choosing the nearest one. A *file*, however, is
read at whatever speed decoding allows, so in ``fast`` pace (and in
``realtime`` pace when analysis falls behind) it would run seconds ahead of
or behind the analysed file and the ring would rarely hold the right
moment. So a file **follows the camera's clock**: the camera worker calls
:meth:`advance` with each analysed frame's ``captured_at``; the reader never
hands out a frame more than ``lead_s`` seconds (default 0) past that, and
``latest()`` waits (at most ``sync_timeout_s``) until the reader has reached
the asked time or is held back. A file snapshot therefore uses the
main-stream frame of the same moment at any pace (to within the ring's
spacing, see below), and clips have their full pre- and post-event windows:
the clip buffer's newest frame is the analysed one, as without a main
stream, so the pre-event part is not cut short (a lead would shorten it by
the lead). The reader holds at most one frame while it waits, and decodes
ahead while the camera runs the detector.

A live main stream, by contrast, is usually a little ahead of the analysed
frame when a rule fires (by the detector's latency), so its clips' pre-event
part is that much shorter than ``pre_s``.

**Memory.** The ring holds at most ``max(2, budget_bytes // frame_bytes)``
frames spread over ``window_s`` seconds: a frame is kept beside the one
before it only if that one is at least ``window_s / capacity`` seconds
after its own predecessor, otherwise it replaces it. So the newest frame is
always there, the ring always spans about ``window_s`` whatever the
resolution, and the nearest frame is at most half that spacing away from
any time inside the window (64 MiB default: every frame of a 768x576 or
1080p 10 fps stream; every ~3rd frame of a 25 fps 1080p stream, ≤ 40 ms
off). Nothing else is kept; ``on_frame`` decides what it keeps.

**Failures.** Nothing here raises into the caller's thread: a URL that
cannot be served, a crash of the reader or of the callback is logged
(``event=evidence_*``) and counted; :attr:`EvidenceStream.failed` tells that
the stream could not be read at all, and ``latest()`` then returns ``None``
(the camera worker falls back to the sub-stream frame).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from ingest.frames import Frame, FrameSource, SourceError, SourceStatus, log_status
from ingest.open_source import local_path, open_source
from ingest.stream_source import StreamOptions, redact_url
from ingest.video_file import Pace

log = logging.getLogger("streetwatch.ingest.evidence")

EVERY_FRAME_FPS = 1000.0  # an "analysis" rate above any camera's: decode every frame
DEFAULT_WINDOW_S = 2.0
DEFAULT_BUDGET_BYTES = 64 << 20
DEFAULT_LEAD_S = 0.0
DEFAULT_SYNC_TIMEOUT_S = 10.0
STOP_GRACE_S = 2.0  # beyond a live source's open + read timeout, when joining the reader

FrameCallback = Callable[[Frame], None]


class EvidenceStream:
    """The main stream of one camera, read in a thread; see the module docstring."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        start: datetime,
        pace: Pace = "realtime",
        loop: bool = False,
        options: StreamOptions | None = None,
        on_frame: FrameCallback | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        lead_s: float = DEFAULT_LEAD_S,
        sync_timeout_s: float = DEFAULT_SYNC_TIMEOUT_S,
    ) -> None:
        if window_s <= 0 or budget_bytes <= 0 or lead_s < 0 or sync_timeout_s < 0:
            raise ValueError("window_s and budget_bytes must be > 0, lead_s and timeouts >= 0")
        self.camera_id = camera_id
        self.url = url
        self.start_at = start
        self.pace = pace
        self.loop = loop
        self.options = options or StreamOptions()
        self.on_frame = on_frame
        self.window_s = window_s
        self.budget_bytes = budget_bytes
        self.lead_s = lead_s
        self.sync_timeout_s = sync_timeout_s
        # a file is read on the camera's clock (see "Keeping the two in step")
        self.follows_camera = local_path(url) is not None
        self.frames = 0  # frames read (and offered to the ring and the callback)
        self.callback_errors = 0
        self.error: str | None = None  # why the stream could not be read at all
        self.source: FrameSource | None = None
        self._safe_url = redact_url(url)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._ring: deque[Frame] = deque()
        self._horizon: datetime | None = None  # newest analysed time (advance)
        self._held_at: datetime | None = None  # the frame the reader holds back, if any
        self._ended = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> EvidenceStream:
        """Start the reader thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"evidence stream of camera {self.camera_id} already started")
        self._thread = threading.Thread(
            target=self._run, name=f"evidence-{self.camera_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop reading and wait for the reader; False if it is still blocked after ``timeout``.

        The default timeout covers a live source blocked in FFmpeg (open or
        read timeout).
        """
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is None:
            return True
        if timeout is None:
            timeout = self.options.open_timeout_s + self.options.read_timeout_s + STOP_GRACE_S
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if not stopped:
            log.warning(
                "event=evidence_stop_timeout camera=%s url=%s after_s=%.1f",
                self.camera_id,
                self._safe_url,
                timeout,
            )
        return stopped

    @property
    def ended(self) -> bool:
        """The reader has finished (stopped, end of file, or failed)."""
        with self._cond:
            return self._ended

    @property
    def failed(self) -> bool:
        """The stream could not be read at all (bad URL, missing file, reader crash)."""
        return self.error is not None

    # -- what the camera thread calls ---------------------------------------------

    def advance(self, at: datetime) -> None:
        """The camera has analysed a frame captured at ``at`` (paces a file; cheap)."""
        if not self.follows_camera:
            return
        with self._cond:
            if self._horizon is None or at > self._horizon:
                self._horizon = at
                self._cond.notify_all()

    def latest(
        self, at: datetime, max_skew_s: float, *, wait_s: float | None = None
    ) -> Frame | None:
        """The recent frame closest to ``at``; None if none is within ``max_skew_s``.

        Waits up to ``wait_s`` for a frame at or after ``at`` (default: up to
        ``sync_timeout_s`` for a file, which follows the camera; up to
        ``max_skew_s`` for a live stream), never past the reader's end.
        """
        self.advance(at)
        if wait_s is None:
            wait_s = self.sync_timeout_s if self.follows_camera else max_skew_s
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._ended
                    or self._stop.is_set()
                    or self._held_back()  # it has read everything up to ``at`` + lead_s
                    or (bool(self._ring) and self._ring[-1].captured_at >= at)
                ),
                timeout=max(wait_s, 0.0),
            )
            best = min(self._ring, key=lambda f: abs(f.captured_at - at), default=None)
        if best is None or abs(best.captured_at - at) > timedelta(seconds=max_skew_s):
            return None
        return best

    @property
    def newest(self) -> Frame | None:
        """The latest frame read, if it is still in the ring."""
        with self._cond:
            return self._ring[-1] if self._ring else None

    def __len__(self) -> int:
        """Frames in the ring now."""
        with self._cond:
            return len(self._ring)

    # -- the reader thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self.source = open_source(
                self.camera_id,
                self.url,
                EVERY_FRAME_FPS,
                pace=self.pace,
                start=self.start_at,
                loop=self.loop,
                stop=self._stop,
                on_status=self._status,
                options=self.options,
            )
            log.info(
                "event=evidence_started camera=%s url=%s follows_camera=%s",
                self.camera_id,
                self._safe_url,
                self.follows_camera,
            )
            for frame in self.source.frames():
                if self.follows_camera and not self._hold(frame.captured_at):
                    continue  # stopping: the source notices the stop event next
                self._keep(frame)
                self._deliver(frame)
        except SourceError as exc:
            self.error = str(exc)
            log.error("event=evidence_error camera=%s error=%s", self.camera_id, exc)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("event=evidence_error camera=%s: unexpected failure", self.camera_id)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            log.info(
                "event=evidence_ended camera=%s frames=%d callback_errors=%d error=%s",
                self.camera_id,
                self.frames,
                self.callback_errors,
                self.error,
            )

    def _hold(self, t: datetime) -> bool:
        """Wait until the camera is within ``lead_s`` of ``t``; False if stopping."""
        lead = timedelta(seconds=self.lead_s)
        with self._cond:

            def may_go() -> bool:
                return self._horizon is not None and t <= self._horizon + lead

            if not may_go():
                self._held_at = t
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._stop.is_set() or may_go())
                self._held_at = None
        return not self._stop.is_set()

    def _held_back(self) -> bool:
        """The reader waits with a frame past the camera's time + lead (lock held)."""
        if self._held_at is None:
            return False
        return self._horizon is None or self._held_at > self._horizon + timedelta(
            seconds=self.lead_s
        )

    def _keep(self, frame: Frame) -> None:
        capacity = max(2, self.budget_bytes // max(frame.image.nbytes, 1))
        spacing = timedelta(seconds=self.window_s / capacity)
        oldest = frame.captured_at - timedelta(seconds=self.window_s)
        with self._cond:
            ring = self._ring
            if ring and frame.captured_at < ring[-1].captured_at:
                ring.clear()  # the clock went back (a looped file, a clock step): start afresh
            if len(ring) >= 2 and ring[-1].captured_at - ring[-2].captured_at < spacing:
                ring[-1] = frame
            else:
                ring.append(frame)
            while len(ring) > capacity or (len(ring) > 1 and ring[0].captured_at < oldest):
                ring.popleft()
            self.frames += 1
            self._cond.notify_all()

    def _deliver(self, frame: Frame) -> None:
        if self.on_frame is None:
            return
        try:
            self.on_frame(frame)
        except Exception:
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception("event=evidence_callback_failed camera=%s", self.camera_id)

    def _status(self, s: SourceStatus) -> None:
        log_status(log, "evidence", s)
