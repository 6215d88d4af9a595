"""One analysed video frame and where it came from; what every frame source offers.

A frame source (a video file, an RTSP or HTTP camera) yields :class:`Frame`
objects from ``frames()`` until its ``stop`` event is set (or, for a file,
the file ends). Live sources also report their connection state as
:class:`SourceStatus` records, which the edge can turn into health events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Frame:
    camera_id: str
    index: int  # position in the stream, counting every decoded frame
    position_s: float  # seconds since the stream started
    captured_at: datetime  # wall-clock time the frame stands for
    image: npt.NDArray[np.uint8]  # BGR, (H, W, 3)


class SourceError(Exception):
    """A video source could not be opened or read."""


class SourceState(StrEnum):
    CONNECTING = "connecting"  # opening the stream (first time or again)
    STREAMING = "streaming"  # the first frame of a connection was decoded
    STALLED = "stalled"  # a read blocked longer than the read timeout
    RECONNECTING = "reconnecting"  # waiting ``retry_in_s`` before connecting again
    STOPPED = "stopped"  # ``frames()`` returned; no more frames


@dataclass(frozen=True)
class SourceStatus:
    """A change of a live source's state, as passed to its status callback."""

    camera_id: str
    state: SourceState
    at: datetime  # wall clock, UTC
    detail: str = ""  # why (e.g. "cannot open stream", "no data for 5.0s")
    retry_in_s: float | None = None  # RECONNECTING: delay before the next attempt
    failures: int = 0  # consecutive failed attempts so far (0 once frames flow)


StatusCallback = Callable[[SourceStatus], None]


class FrameSource(Protocol):
    """What the edge needs from a camera, whatever its kind.

    ``frames()`` returns when ``stop`` is set (a live source may take up to
    its read or open timeout to notice). The counters only grow:
    ``frames_decoded`` counts every decoded frame, ``frames_yielded`` the
    frames handed to analysis, ``reconnects`` the connection attempts after
    the first one, ``stalls`` the reads that timed out.
    """

    @property
    def camera_id(self) -> str: ...
    @property
    def stop(self) -> threading.Event: ...
    @property
    def frames_decoded(self) -> int: ...
    @property
    def frames_yielded(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def stalls(self) -> int: ...

    def frames(self) -> Iterator[Frame]: ...


def log_status(log: logging.Logger, stream: str, s: SourceStatus) -> None:
    """One log line per source state change: warnings for stalls and reconnects."""
    trouble = s.state in (SourceState.STALLED, SourceState.RECONNECTING)
    log.log(
        logging.WARNING if trouble else logging.INFO,
        "event=%s_%s camera=%s detail=%s retry_in_s=%s failures=%d",
        stream,
        s.state,
        s.camera_id,
        s.detail,
        s.retry_in_s,
        s.failures,
    )
