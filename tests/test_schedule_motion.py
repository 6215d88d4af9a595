"""Enforcement hours and the motion gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edge.motion import MotionGate, square_region
from edge.schedule import ActiveHours, parse_range


def shanghai(h: int, m: int) -> datetime:
    return datetime(2026, 11, 20, h, m, tzinfo=UTC) - timedelta(hours=8)


@pytest.mark.parametrize(
    ("ranges", "h", "m", "active"),
    [
        (["06:00-17:30"], 17, 29, True),
        (["06:00-17:30"], 17, 30, False),
        (["06:00-17:30"], 5, 59, False),
        (["22:00-06:00"], 23, 0, True),
        (["22:00-06:00"], 3, 0, True),
        (["22:00-06:00"], 12, 0, False),
        (["08:30-11:30", "13:00-24:00"], 23, 59, True),
        ([], 3, 0, True),
    ],
)
def test_active_hours_in_local_time(ranges: list[str], h: int, m: int, active: bool) -> None:
    assert ActiveHours(ranges, "Asia/Shanghai").active(shanghai(h, m)) is active


@pytest.mark.parametrize("bad", ["6:00-17:30", "06:00-25:00", "06:00-06:00", "noon-dusk"])
def test_bad_ranges_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=bad.split("-")[0]):
        parse_range(bad)


def frame(seed: int = 0, square: tuple[int, int] | None = None) -> np.ndarray:
    img = np.random.default_rng(0).integers(60, 200, (360, 640, 3), dtype=np.uint8)
    if square is not None:
        x, y = square
        img[y : y + 60, x : x + 60] = 255
    return img


def test_gate_skips_still_frames_and_runs_on_motion_and_periodic_checks() -> None:
    gate = MotionGate(width=160, threshold=25, min_area=0.001, full_check_every_s=5.0)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    runs = [gate.should_detect(frame(), t0 + timedelta(seconds=s / 2)) for s in range(20)]
    # first frame, then a full check every 5 s (every 10th frame at 2 fps)
    assert [i for i, r in enumerate(runs) if r] == [0, 10]
    moving = [
        gate.should_detect(frame(square=(100 + 30 * i, 100)), t0 + timedelta(seconds=10 + i / 2))
        for i in range(6)
    ]
    assert all(moving)


def test_masked_motion_does_not_wake_the_detector() -> None:
    mask = [[[0, 0], [320, 0], [320, 360], [0, 360]]]
    gate = MotionGate(width=160, threshold=25, min_area=0.001, full_check_every_s=60.0, masks=mask)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    gate.should_detect(frame(), t0)
    runs = [
        gate.should_detect(frame(square=(50 + 20 * i, 100)), t0 + timedelta(seconds=i + 1))
        for i in range(5)
    ]
    assert runs == [False] * 5


def test_motion_outside_every_zone_does_not_wake_the_detector() -> None:
    zone = [[[400, 0], [640, 0], [640, 360], [400, 360]]]
    gate = MotionGate(width=160, threshold=25, min_area=0.001, full_check_every_s=60.0, zones=zone)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    gate.should_detect(frame(), t0)
    outside = [
        gate.should_detect(frame(square=(50 + 20 * i, 100)), t0 + timedelta(seconds=i + 1))
        for i in range(5)
    ]
    assert outside == [False] * 5
    inside = gate.should_detect(frame(square=(500, 100)), t0 + timedelta(seconds=7))
    assert inside


def test_motion_in_a_corner_runs_the_detector_on_a_square_region_around_it() -> None:
    gate = MotionGate(
        width=160, threshold=25, min_area=0.0005, full_check_every_s=60.0, regions=True
    )
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    assert gate.decide(frame(), t0).whole_frame  # first frame: whole
    decision = gate.decide(frame(square=(500, 250)), t0 + timedelta(seconds=1))
    assert decision.run and decision.region is not None
    x1, y1, x2, y2 = decision.region
    assert x2 - x1 == y2 - y1 == 180  # MIN_REGION of the 360 px short side
    assert x1 <= 500 and 560 <= x2 <= 640 and y1 <= 250 and 310 <= y2 <= 360  # holds the square
    # a full check is still due on time, whatever moved
    assert gate.decide(frame(square=(500, 250)), t0 + timedelta(seconds=61)).whole_frame


def test_motion_spread_wide_runs_the_whole_frame() -> None:
    gate = MotionGate(
        width=160, threshold=25, min_area=0.0005, full_check_every_s=60.0, regions=True
    )
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    gate.decide(frame(), t0)
    two = frame(square=(10, 10))
    two[280:340, 560:620] = 255  # a second mover in the far corner
    assert gate.decide(two, t0 + timedelta(seconds=1)).whole_frame


def test_square_region_stays_inside_the_frame() -> None:
    assert square_region((0, 0, 20, 20), 640, 360) == (0, 0, 180, 180)
    assert square_region((620, 340, 640, 360), 640, 360) == (460, 180, 640, 360)
    assert square_region((0, 0, 400, 300), 640, 360) is None  # more than half the frame
