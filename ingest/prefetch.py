"""Decode ahead: a source's frames read by their own thread into a short queue.

Decoding the next frame (and grabbing the skipped ones) then overlaps with
the detector working on this one, instead of adding to it. The queue holds
at most ``depth`` frames, so a slow consumer holds the reader back (for a
file) and memory stays bounded; a live source keeps its own pacing.
Errors raised by the source reach the consumer at the point they occurred.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable

from ingest.frames import Frame

_END = object()


def prefetched(
    frames: Iterable[Frame], depth: int = 2, name: str = "prefetch"
) -> Generator[Frame, None, None]:
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    closing = threading.Event()

    def put(item: object) -> bool:
        while not closing.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
            return
        put(_END)

    reader = threading.Thread(target=read, name=name, daemon=True)
    reader.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Frame)
            yield item
    finally:
        closing.set()
        reader.join(timeout=5)
