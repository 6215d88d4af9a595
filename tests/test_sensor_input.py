"""Neuron payload parsing and the threshold rule."""

from __future__ import annotations

import pytest

from edge.sensor_rule import ThresholdRule
from ingest.sensor_payload import BadReading, RejectReason, parse_reading
from streetwatch.config import SensorConfig
from streetwatch.records import SensorReading
from tests.factories import at

TOPIC = "neuron/town-1/water_level/wl-1/up"


def test_flat_payload() -> None:
    r = parse_reading(TOPIC, b'{"value": 0.62, "ts": 1763600000, "unit": "m"}', at(0))
    assert (r.device_id, r.device_type, r.town, r.value, r.unit) == (
        "wl-1",
        "water_level",
        "town-1",
        0.62,
        "m",
    )
    assert r.device_time is not None and r.device_time.timestamp() == 1763600000


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"{not json", RejectReason.NOT_JSON),
        (TOPIC, b"\xff\xfe", RejectReason.NOT_JSON),
        (TOPIC, b"[1, 2]", RejectReason.BAD_FIELDS),
        (TOPIC, b'{"value": "high"}', RejectReason.BAD_FIELDS),
        (TOPIC, b'{"value": true}', RejectReason.BAD_FIELDS),
        (TOPIC, b'{"value": 1, "ts": "yesterday"}', RejectReason.BAD_FIELDS),
        (TOPIC, b'{"value": 1, "ts": "2026-11-22T10:00:00"}', RejectReason.BAD_FIELDS),
        (TOPIC, b'{"value": NaN}', RejectReason.BAD_FIELDS),
        ("neuron/town-1/water_level/up", b'{"value": 1}', RejectReason.BAD_TOPIC),
        ("neuron/town-1/water_level/WL 1/up", b'{"value": 1}', RejectReason.BAD_FIELDS),
        (TOPIC, b'{"value": 1, "pad": "' + b"x" * 70000 + b'"}', RejectReason.OVERSIZED),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(
    topic: str, payload: bytes, reason: RejectReason
) -> None:
    with pytest.raises(BadReading) as err:
        parse_reading(topic, payload, at(0))
    assert err.value.reason is reason


def _reading(value: float, s: float) -> SensorReading:
    return SensorReading(
        device_id="wl-1", device_type="water_level", value=value, received_at=at(s)
    )


def test_threshold_fires_once_per_excursion_with_hysteresis() -> None:
    cfg = SensorConfig(
        device_id="wl-1",
        device_type="water_level",
        place="p",
        category="water_level_high",
        alarm_above=0.5,
        clear_below=0.4,
    )
    rule = ThresholdRule(cfg)
    hover = [0.49, 0.51] * 50  # hovers at the threshold: one alarm
    fired = [rule.observe(_reading(v, i)) for i, v in enumerate(hover)]
    assert sum(f is not None for f in fired) == 1
    # falls below clear_below, rises again: a second alarm
    fired2 = [rule.observe(_reading(v, 200 + i)) for i, v in enumerate([0.3, 0.45, 0.6])]
    assert [f is not None for f in fired2] == [False, False, True]
    last = fired2[-1]
    assert last is not None and last[-1].value == 0.6
