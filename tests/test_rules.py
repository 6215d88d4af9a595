"""The rule catalogue on scripted detections: fires once after the dwell, not before,
and never for things that move."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import pytest
from pydantic import TypeAdapter

from detectors.detections import Detections
from edge.rules.base import ZoneRule
from edge.rules.registry import RuleConfig, build_rule
from edge.zones import Zone
from tests.support.factories import T0, at, dets

ZONE = Zone("z", [[0, 0], [1000, 0], [1000, 600], [0, 600]])
Box = tuple[float, float, float, float]
Scene = Callable[[int], Detections]  # second -> detections


def make(type_: str, **kw: object) -> ZoneRule:
    cfg = TypeAdapter(RuleConfig).validate_python(
        {
            "type": type_,
            "rule_id": "r",
            "zone": "z",
            "dwell_s": 20.0,
            "repeat_every_s": 1000.0,
            "grace_s": 3.0,
            **kw,
        }
    )
    return build_rule(cfg, ZONE, "Asia/Shanghai")


def fired_at(rule: ZoneRule, scene: Scene, seconds: int = 60, start: datetime = T0) -> list[float]:
    out = []
    for s in range(seconds):
        now = start + (at(s) - at(0))
        if rule.observe(now, scene(s)) is not None:
            out.append((now - start).total_seconds())
    return out


def still(label: str, box: Box, score: float = 0.7) -> tuple[str, Box, float]:
    return (label, box, score)


def walking(label: str, s: int, y: float = 300, speed: float = 40) -> tuple[str, Box, float]:
    x = 10 + speed * s
    return (label, (x, y, x + 40, y + 100), 0.8)


def people_at(xs: Sequence[float], y: float = 300) -> list[tuple[str, Box, float]]:
    return [still("person", (x, y, x + 40, y + 100), 0.8) for x in xs]


UMBRELLA = still("umbrella", (400, 200, 520, 280))
TABLE = still("dining table", (400, 300, 520, 380))
SELLER = still("person", (530, 270, 570, 380), 0.8)


def test_stall_fires_once_after_dwell_with_true_first_seen() -> None:
    rule = make("illegal_stall")
    times = fired_at(rule, lambda s: dets(UMBRELLA, TABLE, SELLER) if s >= 5 else dets())
    assert times == [25.0]


def test_stall_needs_people_beside_the_objects() -> None:
    far_person = still("person", (50, 300, 90, 400), 0.8)
    assert fired_at(make("illegal_stall"), lambda s: dets(UMBRELLA, TABLE, far_person)) == []
    assert fired_at(make("illegal_stall"), lambda s: dets(UMBRELLA, TABLE)) == []


def test_stall_allowed_in_night_market_hours() -> None:
    # 09:00 UTC = 17:00 Shanghai; rule active 06:00-17:30 local: fires at 17:00:20,
    # but a stall set up at 17:30 local is a night market and raises nothing
    rule = make("illegal_stall", active_hours=["06:00-17:30"])
    assert fired_at(rule, lambda s: dets(UMBRELLA, TABLE, SELLER)) == [20.0]
    night = make("illegal_stall", active_hours=["06:00-17:30"])
    evening = at(30 * 60)  # 17:30 local
    assert fired_at(night, lambda s: dets(UMBRELLA, TABLE, SELLER), start=evening) == []


def test_walking_people_carrying_things_are_not_a_stall() -> None:
    rule = make("illegal_stall")
    assert fired_at(rule, lambda s: dets(walking("person", s), walking("umbrella", s, y=260))) == []


def test_piled_goods_fire_for_still_goods_not_for_people() -> None:
    box = still("suitcase", (100, 400, 160, 470))
    assert fired_at(make("piled_goods"), lambda s: dets(box)) == [20.0]
    assert (
        fired_at(make("piled_goods"), lambda s: dets(still("person", (100, 300, 140, 400)))) == []
    )


def test_non_motor_fires_only_above_the_limit() -> None:
    bikes = [still("bicycle", (60 * i, 400, 60 * i + 50, 460)) for i in range(6)]
    rule = make("disorderly_non_motor", max_parked=5, settle_s=5.0)
    assert fired_at(rule, lambda s: dets(*bikes)) == [25.0]
    five = make("disorderly_non_motor", max_parked=5, settle_s=5.0)
    assert fired_at(five, lambda s: dets(*bikes[:5])) == []


def test_crowd_of_standing_people_fires_walking_stream_does_not() -> None:
    crowd = people_at([100 + 45 * i for i in range(8)])
    rule = make("crowd_gathering", min_people=8, settle_s=5.0)
    assert fired_at(rule, lambda s: dets(*crowd)) == [25.0]
    stream = make("crowd_gathering", min_people=8, settle_s=5.0)
    assert (
        fired_at(stream, lambda s: dets(*[walking("person", s + 3 * i) for i in range(10)])) == []
    )


def test_class_map_raises_the_configured_category() -> None:
    rule = make("class_map", category="bin_overflow", classes=["bottle"])
    assert rule.cfg.category == "bin_overflow"
    assert fired_at(rule, lambda s: dets(still("bottle", (10, 500, 30, 560)))) == [20.0]


@pytest.mark.parametrize("type_", ["illegal_parking", "piled_goods", "class_map"])
def test_detections_dropping_out_keep_the_first_seen(type_: str) -> None:
    label = {"illegal_parking": "car", "piled_goods": "suitcase", "class_map": "bottle"}[type_]
    extra = {"category": "x", "classes": ["bottle"]} if type_ == "class_map" else {}
    rule = make(type_, **extra)
    box = still(label, (100, 400, 200, 480))
    first = []
    for s in range(40):
        firing = rule.observe(at(s), dets(box) if s % 3 != 2 else dets())
        if firing is not None:
            first.append((s, firing.first_seen))
    # s=20 is a blank frame: it fires on the next frame that shows the object
    assert first == [(21, at(0))]


def test_passing_vehicle_raises_nothing() -> None:
    rule = make("illegal_parking")
    assert fired_at(rule, lambda s: dets(walking("car", s, speed=25))) == []
