"""The last few seconds of one camera, kept for the pre-event part of clips.

A :class:`ClipBuffer` holds the frames of the last ``pre_s`` seconds (by
``Frame.captured_at``, the frames' own clock, not the wall clock) and never
more than ``budget_bytes`` of them.

Storage choice: every frame is stored **JPEG-compressed at full resolution**
(quality 80 by default). A 768x576 BGR frame is 1.3 MB raw and about
80 kB as JPEG (vtest.avi: 17x less; 5 s at 5 fps = 26 frames = 2.0 MB), so
five seconds of even a 20 fps stream fit in 8 MB, and the reviewer still
sees the full detail (a plate, the goods of a stall) that downscaling would
throw away. The price is one JPEG encode per frame on the camera thread
(about 1 ms at 768x576) and one decode per frame in the clip encoder's
background thread. The encoded
bytes are immutable and shared: a recording that picks a frame up from the
buffer holds the same ``bytes`` object, it does not copy it.

Bounds:

- time: after each push, frames older than ``newest - pre_s`` are evicted
  (normal expiry, not counted as a drop);
- memory: the buffer's size is the sum of its JPEG payloads plus a fixed
  per-frame overhead (:data:`FRAME_OVERHEAD_BYTES`); while it is above
  ``budget_bytes`` the oldest frame is dropped and ``dropped_budget`` grows.
  A budget too small for ``pre_s`` at the stream's rate therefore shortens
  the pre-event part of clips instead of growing without bound.

Frames whose ``captured_at`` is not later than the newest frame already
pushed are refused and counted in ``dropped_out_of_order``: clip timestamps
must grow strictly.

The buffer accepts whatever frames it is given: only the analysed frames
(``analysis_fps``, e.g. 2-5 fps) or every decoded frame; clips play them at
their real timestamps either way. It is not thread-safe on its own; the
:class:`~edge.clip_recorder.ClipRecorder` that owns it serialises access.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import cv2
import numpy as np
import numpy.typing as npt

from ingest.frames import Frame

DEFAULT_JPEG_QUALITY = 80
# Python object overhead of one buffered frame beyond its JPEG payload: the
# ClipFrame instance, its datetime, the bytes header and the deque slot
# (measured ~200 bytes; rounded up).
FRAME_OVERHEAD_BYTES = 256


class FrameEncodeError(Exception):
    """A frame could not be JPEG-encoded for buffering."""


@dataclass(frozen=True, slots=True)
class ClipFrame:
    """One buffered frame: its time and its JPEG-encoded image."""

    captured_at: datetime
    jpeg: bytes
    width: int
    height: int

    @property
    def size_bytes(self) -> int:
        """What this frame counts against a memory budget."""
        return len(self.jpeg) + FRAME_OVERHEAD_BYTES

    def decode(self) -> npt.NDArray[np.uint8]:
        """The frame as a BGR image (H, W, 3)."""
        image = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameEncodeError(f"cannot decode buffered frame at {self.captured_at}")
        return np.asarray(image, dtype=np.uint8)


def compress(frame: Frame, quality: int = DEFAULT_JPEG_QUALITY) -> ClipFrame:
    """JPEG-encode ``frame`` for buffering."""
    image = frame.image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise FrameEncodeError(
            f"camera {frame.camera_id}: expected a BGR uint8 (H, W, 3) image, "
            f"got {image.dtype} {image.shape}"
        )
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FrameEncodeError(f"camera {frame.camera_id}: JPEG encoding failed")
    height, width = image.shape[:2]
    return ClipFrame(frame.captured_at, jpeg.tobytes(), int(width), int(height))


class ClipBuffer:
    """A ring buffer of the last ``pre_s`` seconds of one camera's frames."""

    def __init__(
        self,
        pre_s: float,
        budget_bytes: int,
        *,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    ) -> None:
        if pre_s < 0:
            raise ValueError(f"pre_s must be >= 0, got {pre_s}")
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be > 0, got {budget_bytes}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        self.pre_s = pre_s
        self.budget_bytes = budget_bytes
        self.jpeg_quality = jpeg_quality
        self._frames: deque[ClipFrame] = deque()
        self._bytes = 0
        self._newest: datetime | None = None
        self.dropped_budget = 0  # frames dropped (oldest first) to stay within the budget
        self.dropped_out_of_order = 0  # frames refused: not later than the newest
        self.pushed = 0  # frames accepted

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[ClipFrame]:
        return iter(tuple(self._frames))

    @property
    def bytes_used(self) -> int:
        """Bytes counted against ``budget_bytes`` right now."""
        return self._bytes

    @property
    def newest(self) -> datetime | None:
        """``captured_at`` of the newest accepted frame."""
        return self._newest

    def push(self, frame: Frame) -> ClipFrame | None:
        """Compress and keep ``frame``; return what was stored, or ``None``.

        ``None`` means the frame was refused (its time is not after the
        newest frame's). The returned :class:`ClipFrame` is returned even if
        the budget then dropped it again, so that a recording in progress
        can still keep it.
        """
        if self._newest is not None and frame.captured_at <= self._newest:
            self.dropped_out_of_order += 1
            return None
        return self.add(compress(frame, self.jpeg_quality))

    def add(self, item: ClipFrame) -> ClipFrame | None:
        """Keep an already-compressed frame; same rules as :meth:`push`."""
        if self._newest is not None and item.captured_at <= self._newest:
            self.dropped_out_of_order += 1
            return None
        self._newest = item.captured_at
        self._frames.append(item)
        self._bytes += item.size_bytes
        self.pushed += 1
        horizon = item.captured_at - timedelta(seconds=self.pre_s)
        while self._frames and self._frames[0].captured_at < horizon:
            self._bytes -= self._frames.popleft().size_bytes
        while self._frames and self._bytes > self.budget_bytes:
            self._bytes -= self._frames.popleft().size_bytes
            self.dropped_budget += 1
        return item

    def since(self, start: datetime) -> list[ClipFrame]:
        """The buffered frames captured at or after ``start``, oldest first."""
        return [f for f in self._frames if f.captured_at >= start]

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0
