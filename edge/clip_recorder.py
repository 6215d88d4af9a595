"""Evidence clips for one camera: pre-event buffer + post-event frames -> MP4.

One thread (the camera thread, or the evidence stream's reader when the
camera has a main stream) calls :meth:`ClipRecorder.push` with every frame it has
(analysed frames only, or every decoded frame: clips play them at their real
``captured_at`` either way) and :meth:`ClipRecorder.start` when an event
fires. ``start(event_id, at)`` returns a :class:`~concurrent.futures.Future`
that resolves to an :class:`~core.records.Evidence` (kind ``clip``,
``video/mp4``, path, sha256, ``captured_at`` = the clip's first frame, i.e.
clip time 0) or fails with :class:`ClipRefused` /
:class:`~edge.clip_writer.ClipWriteError`. Use ``add_done_callback`` for a
callback; it runs on the encoder thread.

A recording takes the buffered frames from ``at - pre_s`` on, then keeps the
frames pushed up to ``at + post_s``. The first frame pushed after that ends
it (so does :meth:`flush` / :meth:`close`, e.g. at the end of a stream); its
frames are then encoded on a background thread (one per recorder unless an
executor is shared), never on the camera thread. The camera thread only
pays a JPEG encode per frame (see :mod:`edge.clip_buffer`).

Overlapping events: at most ``max_in_flight`` recordings exist at a time,
counting those still collecting frames and those waiting for or in the
encoder. An event beyond that **merges** into the newest recording still
collecting: its end moves to ``at + post_s`` and the event's future resolves
to that shared clip (named after the recording's first event), which then
holds the full pre and post window of both events. A merge that would make
the clip longer than ``max_clip_s`` is **refused**, as is an event when no
recording is collecting (all in flight are encoding); the future fails with
:class:`ClipRefused` and ``stats.refused[reason]`` counts it (reasons
``too_long``, ``busy``, ``closed``). A second ``start`` with an event id
already recording returns the same future.

Privacy: with ``redact`` (:meth:`edge.privacy.Redactor.clip_frames`), the
clip written at ``<name>.mp4`` (the one the evidence names) is made of the
frames ``redact`` yields, faces blurred; with ``originals`` too, the frames as
they were are also encoded to ``originals/<name>.mp4``, a file no evidence
names (a failure there is logged and does not fail the clip).

Memory bound per camera: ``budget_bytes`` (the pre-event buffer, 8 MiB by
default: 5 s of 768x576 at up to ~20 fps) plus
``max_in_flight * recording_budget_bytes`` (frames held by recordings,
shared with the buffer where they overlap), plus, during an encode, one
decoded frame and x264's lookahead. A recording that reaches its budget
stops collecting early (``stats.truncated``) and is encoded with what it has.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2

from core.memory import give_back
from core.records import Evidence, EvidenceKind
from edge.clip_buffer import (
    DEFAULT_JPEG_QUALITY,
    ClipBuffer,
    ClipFrame,
    FrameEncodeError,
    compress,
)
from edge.clip_writer import (
    MEDIA_TYPE,
    ClipInfo,
    ClipSettings,
    ClipWriteError,
    Image,
    write_clip,
)
from ingest.frames import Frame

#: a recording's frames, and whether plates are blurred -> the frames to encode
#: (edge.privacy.Redactor.clip_frames)
Redact = Callable[[Sequence[ClipFrame], bool], Iterable[tuple[datetime, Image]]]

log = logging.getLogger(__name__)

MiB = 1 << 20
EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class ClipRefused(Exception):
    """No clip will be made for this event; ``reason`` says why."""

    def __init__(self, event_id: str, reason: str, detail: str) -> None:
        super().__init__(f"clip for {event_id} refused ({reason}): {detail}")
        self.event_id = event_id
        self.reason = reason


@dataclass
class ClipRecorderStats:
    started: int = 0  # recordings begun
    merged: int = 0  # events folded into a recording already collecting
    refused: Counter[str] = field(default_factory=Counter)  # by reason
    truncated: int = 0  # recordings ended early by their byte budget
    written: int = 0  # clips written
    failed: int = 0  # recordings whose clip could not be written
    frame_errors: int = 0  # frames that could not be buffered
    last_clip: ClipInfo | None = None


@dataclass
class _Recording:
    name: str  # first event id; the clip's file name
    event_ids: list[str]
    start_at: datetime
    end_at: datetime
    frames: list[ClipFrame]
    futures: list[Future[Evidence]]
    bytes: int = 0
    truncated: bool = False
    hide_plates: bool = True  # (with a redactor) false only while every event keeps them

    def add(self, frame: ClipFrame) -> None:
        self.frames.append(frame)
        self.bytes += frame.size_bytes


class ClipRecorder:
    """Pre/post-event clips of one camera, encoded off the camera thread."""

    def __init__(
        self,
        camera_id: str,
        directory: Path,
        *,
        pre_s: float = 5.0,
        post_s: float = 5.0,
        budget_bytes: int = 8 * MiB,
        recording_budget_bytes: int | None = None,
        max_in_flight: int = 2,
        max_clip_s: float | None = None,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        settings: ClipSettings | None = None,
        executor: Executor | None = None,
        redact: Redact | None = None,
        originals: Path | None = None,
    ) -> None:
        if post_s < 0:
            raise ValueError(f"post_s must be >= 0, got {post_s}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.camera_id = camera_id
        self.directory = directory
        self.pre_s = pre_s
        self.post_s = post_s
        self.buffer = ClipBuffer(pre_s, budget_bytes, jpeg_quality=jpeg_quality)
        self.recording_budget_bytes = recording_budget_bytes or 3 * budget_bytes
        self.max_in_flight = max_in_flight
        self.max_clip_s = max_clip_s if max_clip_s is not None else max(30.0, pre_s + post_s)
        self.settings = settings or ClipSettings()
        self.redact = redact
        self.originals = originals
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"clip-{camera_id}"
        )
        self._lock = threading.Lock()
        self._collecting: list[_Recording] = []
        self._encoding = 0
        self._idle = threading.Condition(self._lock)
        self._by_event: dict[str, Future[Evidence]] = {}
        self._to_fail: list[tuple[list[Future[Evidence]], Exception]] = []
        self._closed = False
        self.stats = ClipRecorderStats()

    @property
    def in_flight(self) -> int:
        """Recordings collecting frames or waiting for / in the encoder."""
        with self._lock:
            return len(self._collecting) + self._encoding

    def push(self, frame: Frame) -> None:
        """Buffer one frame and hand it to recordings in progress. Never raises."""
        if self._closed:
            return
        newest = self.buffer.newest
        if newest is not None and frame.captured_at <= newest:  # skip the JPEG encode
            with self._lock:
                self.buffer.dropped_out_of_order += 1
            return
        try:  # the JPEG encode, outside the lock
            item = compress(frame, self.buffer.jpeg_quality)
        except (FrameEncodeError, cv2.error) as exc:
            with self._lock:
                self.stats.frame_errors += 1
                first = self.stats.frame_errors == 1
            if first:
                log.warning("camera %s: frame not buffered for clips: %s", self.camera_id, exc)
            return
        with self._lock:
            if self._closed or self.buffer.add(item) is None:
                return
            for rec in list(self._collecting):
                if item.captured_at > rec.end_at:
                    self._finish(rec)
                    continue
                rec.add(item)
                if rec.bytes > self.recording_budget_bytes:
                    rec.truncated = True
                    self.stats.truncated += 1
                    self._finish(rec)
        self._settle()

    def start(self, event_id: str, at: datetime, *, hide_plates: bool = True) -> Future[Evidence]:
        """Record a clip from ``at - pre_s`` to ``at + post_s`` for ``event_id``;
        ``hide_plates`` false: this event may keep plates sharp (a clip shared with an
        event that may not blurs them)."""
        if not EVENT_ID.match(event_id):
            raise ValueError(f"event id {event_id!r} is not usable as a file name")
        future: Future[Evidence] = Future()
        end_at = at + timedelta(seconds=self.post_s)
        with self._lock:
            existing = self._by_event.get(event_id)
            if existing is not None:
                return existing
            if self._closed:
                return self._refuse(future, event_id, "closed", "the recorder is closed")
            if len(self._collecting) + self._encoding < self.max_in_flight:
                self._begin(future, event_id, at, end_at, hide_plates)
            elif not self._collecting:
                return self._refuse(
                    future,
                    event_id,
                    "busy",
                    f"{self._encoding} clip(s) of camera {self.camera_id} are being encoded",
                )
            else:
                rec = self._collecting[-1]
                length = (max(rec.end_at, end_at) - rec.start_at).total_seconds()
                if length > self.max_clip_s:
                    return self._refuse(
                        future,
                        event_id,
                        "too_long",
                        f"merging into {rec.name} would make a {length:.1f}s clip "
                        f"(max_clip_s {self.max_clip_s:g})",
                    )
                rec.end_at = max(rec.end_at, end_at)
                rec.hide_plates = rec.hide_plates or hide_plates
                rec.event_ids.append(event_id)
                rec.futures.append(future)
                self._by_event[event_id] = future
                self.stats.merged += 1
        self._settle()
        return future

    def flush(self) -> None:
        """End every recording still collecting with the frames it has (end of stream)."""
        with self._lock:
            for rec in list(self._collecting):
                self._finish(rec)
        self._settle()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no clip is waiting for or in the encoder; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._encoding == 0, timeout)

    def close(self, wait: bool = True) -> None:
        """Flush, refuse later events, and (if it is ours) stop the encoder thread."""
        self.flush()
        with self._lock:
            self._closed = True
        if self._own_executor:
            self._executor.shutdown(wait=wait)
        elif wait:
            self.wait_idle()

    # -- internals (called with the lock held) --------------------------------

    def _refuse(
        self, future: Future[Evidence], event_id: str, reason: str, detail: str
    ) -> Future[Evidence]:
        self.stats.refused[reason] += 1
        log.warning("camera %s: clip for %s refused: %s", self.camera_id, event_id, detail)
        future.set_exception(ClipRefused(event_id, reason, detail))
        return future

    def _begin(
        self,
        future: Future[Evidence],
        event_id: str,
        at: datetime,
        end_at: datetime,
        hide_plates: bool,
    ) -> None:
        rec = _Recording(
            name=event_id,
            event_ids=[event_id],
            start_at=at - timedelta(seconds=self.pre_s),
            end_at=end_at,
            frames=[],
            futures=[future],
            hide_plates=hide_plates,
        )
        for item in self.buffer.since(rec.start_at):
            if item.captured_at <= end_at:
                rec.add(item)
        self._collecting.append(rec)
        self._by_event[event_id] = future
        self.stats.started += 1
        newest = self.buffer.newest
        if newest is not None and newest > end_at:  # the window is already over
            self._finish(rec)

    def _finish(self, rec: _Recording) -> None:
        self._collecting.remove(rec)
        for event_id in rec.event_ids:
            self._by_event.pop(event_id, None)
        if not rec.frames:
            self.stats.failed += 1
            self._to_fail.append((rec.futures, ClipWriteError(f"no frames for clip {rec.name}")))
            return
        self._encoding += 1
        try:
            self._executor.submit(self._encode, rec)
        except RuntimeError as exc:  # executor shut down
            self._encoding -= 1
            self.stats.failed += 1
            self._to_fail.append((rec.futures, ClipWriteError(f"clip {rec.name}: {exc}")))

    def _settle(self) -> None:
        """Fail the futures queued by _finish, outside the lock (callbacks may call us)."""
        with self._lock:
            to_fail, self._to_fail = self._to_fail, []
        for futures, exc in to_fail:
            _fail(futures, exc)

    # -- encoder thread --------------------------------------------------------

    def _encode(self, rec: _Recording) -> None:
        path = (self.directory / f"{rec.name}.mp4").absolute()
        first = rec.frames[0].captured_at
        metadata = {
            "title": f"{self.camera_id} {' '.join(rec.event_ids)}",
            "comment": f"streetwatch clip; clip time 0 = {first.isoformat()}",
        }
        try:
            if self.redact is not None and self.originals is not None:
                self._encode_original(rec, metadata)
            frames: Iterable[tuple[datetime, Image]] = (
                ((f.captured_at, f.decode()) for f in rec.frames)
                if self.redact is None
                else self.redact(rec.frames, rec.hide_plates)
            )
            info = write_clip(frames, path, self.settings, metadata=metadata)
            evidence = Evidence(
                kind=EvidenceKind.CLIP,
                path=str(path),
                sha256=info.sha256,
                media_type=MEDIA_TYPE,
                captured_at=info.first_at,
                size=path.stat().st_size,
            )
        except Exception as exc:
            log.warning("camera %s: clip %s failed: %s", self.camera_id, rec.name, exc)
            with self._lock:
                self.stats.failed += 1
                self._encoding -= 1
                self._idle.notify_all()
            _fail(rec.futures, exc)
            return
        log.info(
            "camera %s: clip %s: %d frames, %.1fs, %d bytes, encoded in %.2fs%s",
            self.camera_id,
            path.name,
            info.frames,
            info.duration_s,
            info.size_bytes,
            info.encode_s,
            " (truncated by its byte budget)" if rec.truncated else "",
        )
        give_back()  # the decoded frames and the encoder's buffers (core/memory.py)
        with self._lock:
            self.stats.written += 1
            self.stats.last_clip = info
            self._encoding -= 1
            self._idle.notify_all()
        for future in rec.futures:
            if not future.cancelled():
                future.set_result(evidence)

    def _encode_original(self, rec: _Recording, metadata: dict[str, str]) -> None:
        """The unblurred clip, kept on the box only (see the module's docstring)."""
        assert self.originals is not None
        path = (self.originals / f"{rec.name}.mp4").absolute()
        try:
            write_clip(
                ((f.captured_at, f.decode()) for f in rec.frames),
                path,
                self.settings,
                metadata=metadata,
            )
        except Exception as exc:
            log.warning("camera %s: original clip %s failed: %s", self.camera_id, rec.name, exc)


def _fail(futures: list[Future[Evidence]], exc: BaseException) -> None:
    for future in futures:
        if not future.cancelled():
            future.set_exception(exc)
