"""Decoding ahead keeps order, passes errors on, and stops when the consumer stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.frames import Frame, SourceError
from ingest.prefetch import prefetched


def frames(
    n: int, fail_at: int | None = None, produced: list[int] | None = None
) -> Iterator[Frame]:
    for i in range(n):
        if i == fail_at:
            raise SourceError(f"broken at {i}")
        if produced is not None:
            produced.append(i)
        yield Frame("cam", i, i / 10, datetime.now(UTC), np.zeros((2, 2, 3), np.uint8))


def test_frames_arrive_in_order() -> None:
    assert [f.index for f in prefetched(frames(50))] == list(range(50))


def test_source_errors_reach_the_consumer_after_the_frames_before_them() -> None:
    seen = []
    with pytest.raises(SourceError, match="broken at 7"):
        for f in prefetched(frames(20, fail_at=7)):
            seen.append(f.index)
    assert seen == list(range(7))


def test_reader_stops_when_the_consumer_stops_and_reads_only_a_little_ahead() -> None:
    produced: list[int] = []
    stream = prefetched(frames(10_000, produced=produced), depth=2)
    assert next(stream).index == 0
    stream.close()
    assert len(produced) <= 4  # the one consumed, the queue's two, one waiting
    assert not [t for t in threading.enumerate() if t.name == "prefetch"]
