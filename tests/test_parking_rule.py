"""The illegal-parking rule on synthetic detections."""

from __future__ import annotations

from datetime import datetime

from detectors.detections import Detections
from edge.rules.base import Firing
from edge.rules.parking import ParkingRule, ParkingRuleConfig
from edge.zones import Zone
from tests.support.factories import at, dets

ZONE = Zone("bay", [[100, 100], [400, 100], [400, 300], [100, 300]])
CAR = (150, 150, 250, 250)  # bottom centre (200, 250): inside


def rule(**kw: float) -> ParkingRule:
    cfg = ParkingRuleConfig.model_validate(
        {
            "type": "illegal_parking",
            "rule_id": "r",
            "zone": "bay",
            "dwell_s": 10.0,
            "repeat_every_s": 10.0,
            **kw,
        }
    )
    return ParkingRule(cfg, ZONE)


def feed(
    r: ParkingRule, frames: list[tuple[datetime, Detections]]
) -> list[tuple[datetime, Firing]]:
    out = []
    for t, d in frames:
        f = r.observe(t, d)
        if f is not None:
            out.append((t, f))
    return out


def test_fires_after_dwell_not_before_then_repeats() -> None:
    frames = [(at(s), dets(("car", CAR, 0.6))) for s in range(0, 31)]
    fired = feed(rule(), frames)
    assert [t for t, _ in fired] == [at(10), at(20), at(30)]
    assert all(f.first_seen == at(0) for _, f in fired)
    assert len(fired[0][1].detections) == 1


def test_detection_gaps_within_grace_keep_the_dwell() -> None:
    # every third frame has no detection (blanked), the car never moved
    frames = [(at(s), dets(("car", CAR, 0.6)) if s % 3 != 2 else dets()) for s in range(0, 16)]
    fired = feed(rule(grace_s=5), frames)
    assert fired and fired[0][0] == at(10) and fired[0][1].first_seen == at(0)


def test_does_not_fire_on_a_frame_where_the_vehicle_is_unseen() -> None:
    frames = [(at(s), dets(("car", CAR, 0.6)) if s != 10 else dets()) for s in range(0, 12)]
    fired = feed(rule(grace_s=5), frames)
    assert [t for t, _ in fired] == [at(11)]


def test_moving_vehicle_never_fires() -> None:
    frames = [
        (at(s), dets(("car", (100 + 20 * s, 150, 200 + 20 * s, 250), 0.7))) for s in range(15)
    ]
    assert feed(rule(), frames) == []


def test_people_and_vehicles_outside_the_zone_never_fire() -> None:
    outside = (500, 150, 600, 250)
    frames = [(at(s), dets(("person", CAR, 0.9), ("car", outside, 0.9))) for s in range(30)]
    assert feed(rule(), frames) == []


def test_low_scores_do_not_count() -> None:
    frames = [(at(s), dets(("car", CAR, 0.2))) for s in range(30)]
    assert feed(rule(min_score=0.3), frames) == []


def test_episode_ends_when_the_vehicle_leaves() -> None:
    here = [(at(s), dets(("car", CAR, 0.6))) for s in range(0, 11)]
    gone = [(at(s), dets()) for s in range(11, 30)]
    back = [(at(s), dets(("car", CAR, 0.6))) for s in range(30, 41)]
    fired = feed(rule(grace_s=3), here + gone + back)
    assert [(t, f.first_seen) for t, f in fired] == [(at(10), at(0)), (at(40), at(30))]
