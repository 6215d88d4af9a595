"""Sensor rules and their engine, driven by readings and an injected clock."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Sequence
from datetime import datetime, timedelta
from xml.etree import ElementTree

import pytest
from pydantic import ValidationError

from core.records import Alert, AlertPhase, Place, SensorReading
from edge.sensor_rules.base import FlappingConfig
from edge.sensor_rules.chart import readings_chart
from edge.sensor_rules.config import (
    DeviceTypeConfig,
    SensorRegistry,
    apply_overrides,
    default_device_types,
)
from edge.sensor_rules.engine import CONTEXT_READINGS, SensorEngine, SensorFiring
from edge.sensor_rules.heartbeat import HeartbeatConfig
from edge.sensor_rules.threshold import ThresholdConfig
from ingest.device_config import DeviceConfig
from ingest.sensor_payload import BadReading, RejectReason
from tests.support.factories import at

RAISED, CLEARED = AlertPhase.RAISED, AlertPhase.CLEARED


def kind(rules: Sequence[object], name: str = "gauge", **extra: object) -> DeviceTypeConfig:
    return DeviceTypeConfig.model_validate({"name": name, "unit": "m", "rules": rules, **extra})


def engine(
    dtype: DeviceTypeConfig, *, started_at: datetime | None = None, **device: object
) -> SensorEngine:
    dev = DeviceConfig.model_validate(
        {"device_id": "d-1", "type": dtype.name, "name": "Somewhere", **device}
    )
    return SensorEngine(SensorRegistry({dtype.name: dtype}, [dev]), started_at=started_at)


def reading(
    s: float,
    value: float | None = None,
    *,
    state: str | None = None,
    battery: float | None = None,
    device_type: str = "gauge",
    device_id: str = "d-1",
    device_time: datetime | None = None,
) -> SensorReading:
    return SensorReading(
        device_id=device_id,
        device_type=device_type,
        value=value,
        state=state,
        battery_pct=battery,
        device_time=device_time,
        received_at=at(s),
    )


def feed(eng: SensorEngine, readings: Sequence[SensorReading]) -> list[SensorFiring]:
    out: list[SensorFiring] = []
    for r in readings:
        out.extend(eng.observe(r))
    return out


def phases(firings: Sequence[SensorFiring]) -> list[tuple[str, AlertPhase]]:
    return [(f.rule_id, f.phase) for f in firings]


LEVEL = {"type": "threshold", "rule_id": "level", "category": "water_level_high"}


# --- threshold: hysteresis -------------------------------------------------


def test_hovering_reading_raises_once_and_never_clears() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}]))
    values = [0.81 if i % 2 == 0 else 0.79 for i in range(100)]
    fired = feed(eng, [reading(i * 10, v) for i, v in enumerate(values)])
    assert phases(fired) == [("level", RAISED)]
    assert fired[0].at == at(0) and fired[0].first_seen == at(0)
    assert fired[0].category == "water_level_high"
    assert "above 0.8m" in fired[0].text and "below 0.6m" in fired[0].text


def test_hovering_on_the_default_water_level_type_raises_once() -> None:
    types = default_device_types()
    dev = DeviceConfig(device_id="wl-1", type="water_level", name="Bridge")
    eng = SensorEngine(SensorRegistry(types, [dev]))
    values = [0.51 if i % 2 == 0 else 0.49 for i in range(100)]
    fired = feed(
        eng,
        [
            reading(i * 10, v, device_type="water_level", device_id="wl-1")
            for i, v in enumerate(values)
        ],
    )
    assert phases(fired) == [("level", RAISED)]


def test_excursion_raises_then_clears_below_exit() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}]))
    fired = feed(eng, [reading(s, v) for s, v in enumerate([0.5, 0.9, 0.95, 0.7, 0.61, 0.59, 0.9])])
    assert [(f.phase, f.at) for f in fired] == [
        (RAISED, at(1)),
        (CLEARED, at(5)),
        (RAISED, at(6)),
    ]
    assert fired[1].first_seen == at(1)  # the clear names the episode it ends


def test_threshold_below_direction_and_battery_field() -> None:
    rule = {
        "type": "threshold",
        "rule_id": "low",
        "category": "pressure_low",
        "direction": "below",
        "enter": 2.0,
        "exit": 2.5,
    }
    eng = engine(kind([rule]))
    fired = feed(eng, [reading(s, v) for s, v in enumerate([3.0, 1.9, 2.2, 1.8, 2.6])])
    assert [(f.phase, f.at) for f in fired] == [(RAISED, at(1)), (CLEARED, at(4))]
    batt = {**rule, "rule_id": "batt", "field": "battery_pct", "enter": 10.0, "exit": 12.0}
    eng = engine(kind([batt]))
    fired = feed(eng, [reading(0, 5.0, battery=50), reading(1, 5.0, battery=9)])
    assert phases(fired) == [("batt", RAISED)] and fired[0].field == "battery_pct"


def test_readings_without_the_watched_field_change_nothing() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}]))
    assert feed(eng, [reading(0, None, state="normal"), reading(1, 0.9)])[0].phase is RAISED
    assert feed(eng, [reading(2, None, battery=50)]) == []


# --- threshold: hold-down --------------------------------------------------


def test_hold_s_needs_the_condition_for_t_seconds() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "hold_s": 60}]))
    # a 50 s excursion ends below exit: nothing
    assert feed(eng, [*(reading(s, 0.9) for s in range(0, 55, 10)), reading(55, 0.5)]) == []
    # in the hysteresis band the condition still holds: 100..160 raises at 160
    seq = [(100, 0.9), (120, 0.7), (140, 0.85), (159, 0.9), (160, 0.9), (170, 0.9)]
    fired = feed(eng, [reading(s, v) for s, v in seq])
    assert [(f.phase, f.first_seen, f.at) for f in fired] == [(RAISED, at(100), at(160))]


def test_hold_s_is_reset_by_a_reading_past_exit() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "hold_s": 30}]))
    seq = [(0, 0.9), (20, 0.5), (25, 0.9), (50, 0.9), (55, 0.9)]
    fired = feed(eng, [reading(s, v) for s, v in seq])
    assert [(f.first_seen, f.at) for f in fired] == [(at(25), at(55))]


def test_n_of_m_ignores_single_spikes() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "n_of_m": [3, 5]}]))
    spikes = [0.9, 0.5, 0.5, 0.9, 0.5, 0.5, 0.9, 0.5, 0.5, 0.9]  # never 3 in any 5
    assert feed(eng, [reading(s, v) for s, v in enumerate(spikes)]) == []
    seq = [0.5, 0.5, 0.9, 0.7, 0.9, 0.9]
    fired = feed(eng, [reading(10 + s, v) for s, v in enumerate(seq)])
    # the last five at 15 s: 0.5 0.9 0.7 0.9 0.9 -> three beyond enter; entered at 12 s
    assert [(f.phase, f.first_seen, f.at) for f in fired] == [(RAISED, at(12), at(15))]


def test_hold_s_and_n_of_m_together_both_must_hold() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "hold_s": 20, "n_of_m": [3, 4]}]))
    fired = feed(eng, [reading(s * 10, 0.9) for s in range(3)])  # 3 of 4 at 20 s: both hold
    assert [(f.phase, f.at) for f in fired] == [(RAISED, at(20))]
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "hold_s": 100, "n_of_m": [2, 4]}]))
    fired = feed(eng, [reading(s * 10, 0.9) for s in range(12)])
    assert [(f.phase, f.at) for f in fired] == [(RAISED, at(100))]


# --- rate of change --------------------------------------------------------


def test_rate_of_change_raises_on_a_fast_rise_and_clears_when_steady() -> None:
    rule = {
        "type": "rate_of_change",
        "rule_id": "rise",
        "category": "water_level_rising",
        "max_per_min": 0.05,
        "window_s": 300,
        "min_span_s": 60,
    }
    eng = engine(kind([rule]))
    slow = [reading(s, 0.2 + s / 60 * 0.01) for s in range(0, 600, 30)]  # 0.01 m/min
    assert feed(eng, slow) == []
    fast = [reading(600 + s, 0.3 + s / 60 * 0.1) for s in range(0, 300, 30)]  # 0.1 m/min
    fired = feed(eng, fast)
    assert phases(fired) == [("rise", RAISED)]
    assert "0.05m/min" in fired[0].text
    flat = [reading(900 + s, 0.75) for s in range(0, 600, 30)]
    fired = feed(eng, flat)
    assert phases(fired) == [("rise", CLEARED)]


def test_rate_of_change_fall_and_sparse_readings() -> None:
    rule = {
        "type": "rate_of_change",
        "rule_id": "drop",
        "category": "pressure_drop",
        "direction": "fall",
        "max_per_min": 1.0,
        "window_s": 60,
        "min_span_s": 30,
    }
    eng = engine(kind([rule]))
    # readings 10 min apart (sparser than the window): judged against the previous one
    fired = feed(eng, [reading(0, 50.0), reading(600, 45.0), reading(1200, 30.0)])
    assert [(f.phase, f.at) for f in fired] == [(RAISED, at(1200))]
    assert fired[0].first_seen == at(600)
    # a rise is no fall: cleared
    assert phases(feed(eng, [reading(1230, 80.0)])) == [("drop", CLEARED)]


# --- state -----------------------------------------------------------------

DOOR = {
    "type": "state",
    "rule_id": "open_too_long",
    "category": "door_open_too_long",
    "raise_on": ["open"],
    "clear_on": ["closed"],
    "for_s": 600,
}


def test_door_open_too_long_is_found_by_tick() -> None:
    eng = engine(kind([DOOR]))
    assert feed(eng, [reading(0, state="open")]) == []
    assert eng.tick(at(300)) == []
    assert eng.tick(at(599)) == []
    fired = eng.tick(at(601))
    assert [(f.phase, f.first_seen, f.at) for f in fired] == [(RAISED, at(0), at(601))]
    assert fired[0].readings[-1].state == "open"
    assert eng.tick(at(700)) == [] and feed(eng, [reading(710, state="open")]) == []
    fired = feed(eng, [reading(900, state="closed")])
    assert [(f.phase, f.first_seen, f.at) for f in fired] == [(CLEARED, at(0), at(900))]
    assert eng.tick(at(5000)) == []


def test_door_closed_in_time_raises_nothing_and_a_late_reading_also_raises() -> None:
    eng = engine(kind([DOOR]))
    assert feed(eng, [reading(0, state="open"), reading(500, state="closed")]) == []
    assert eng.tick(at(2000)) == []
    # without ticks the next reading notices the time held
    fired = feed(eng, [reading(3000, state="open"), reading(3700, state="open")])
    assert [(f.phase, f.first_seen) for f in fired] == [(RAISED, at(3000))]


def test_alarm_and_tamper_states() -> None:
    types = default_device_types()
    eng = SensorEngine(
        SensorRegistry(types, [DeviceConfig(device_id="s-1", type="smoke", name="x")])
    )

    def smoke(s: float, state: str) -> list[SensorFiring]:
        return eng.observe(reading(s, state=state, device_type="smoke", device_id="s-1"))

    assert smoke(0, "normal") == []
    assert [(f.rule_id, f.category, f.phase) for f in smoke(1, "alarm")] == [
        ("alarm", "smoke_alarm", RAISED)
    ]
    assert smoke(2, "alarm") == [] and smoke(3, "smoke") == []
    assert [(f.rule_id, f.phase) for f in smoke(4, "tamper")] == [("tamper", RAISED)]
    fired = smoke(5, "normal")
    assert sorted(phases(fired)) == [("alarm", CLEARED), ("tamper", CLEARED)]


def test_state_with_empty_clear_on_clears_on_any_other_state() -> None:
    rule = {"type": "state", "rule_id": "a", "category": "alarm", "raise_on": ["alarm"]}
    eng = engine(kind([rule]))
    fired = feed(eng, [reading(0, state="alarm"), reading(1, state="whatever")])
    assert phases(fired) == [("a", RAISED), ("a", CLEARED)]


# --- heartbeat -------------------------------------------------------------


def test_silent_device_goes_offline_once_and_recovers_once() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}], heartbeat_s=900))
    assert feed(eng, [reading(0, 0.1)]) == []
    fired = [f for s in range(0, 3000, 10) for f in eng.tick(at(s))]
    assert [(f.rule_id, f.category, f.phase, f.first_seen, f.at) for f in fired] == [
        ("heartbeat", "device_offline", RAISED, at(0), at(910))
    ]
    assert "no message for 900s" in fired[0].text
    assert fired[0].readings == (reading(0, 0.1),)
    back = eng.observe(reading(3000, 0.9))
    # back online first, then what the reading itself says
    assert [(f.rule_id, f.phase) for f in back] == [("heartbeat", CLEARED), ("level", RAISED)]
    assert back[0].first_seen == at(0) and back[0].at == at(3000)
    assert [f for s in range(3000, 3900, 10) for f in eng.tick(at(s))] == []
    assert feed(eng, [reading(3010, 0.9)]) == []


def test_never_heard_device_goes_offline_counted_from_start() -> None:
    dtype = kind([], heartbeat_s=60)
    assert engine(dtype).tick(at(1000)) == []  # not watched before its first message
    eng = engine(dtype, started_at=at(0))
    assert eng.tick(at(60)) == []
    assert phases(eng.tick(at(61))) == [("heartbeat", RAISED)]


def test_heartbeat_uses_receive_time_not_device_time() -> None:
    eng = engine(kind([], heartbeat_s=60))
    eng.observe(reading(100, 1.0, device_time=at(0)))  # device clock far behind
    assert eng.tick(at(150)) == []


# --- low battery -----------------------------------------------------------


def test_low_battery_raises_below_enter_and_clears_above_exit() -> None:
    eng = engine(kind([{"type": "low_battery"}]))
    seq = [25, 19, 18, 25, 29, 31, 19]
    fired = feed(eng, [reading(s, battery=b) for s, b in enumerate(seq)])
    assert [(f.rule_id, f.category, f.phase, f.at) for f in fired] == [
        ("battery", "low_battery", RAISED, at(1)),
        ("battery", "low_battery", CLEARED, at(5)),
        ("battery", "low_battery", RAISED, at(6)),
    ]
    assert fired[0].levels == (20.0, 30.0) and fired[0].field == "battery_pct"


# --- flapping --------------------------------------------------------------


def test_flapping_condition_is_one_episode() -> None:
    flap = {"max_changes": 3, "window_s": 300, "quiet_s": 120}
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "flapping": flap}]))
    values = [0.9 if i % 2 == 0 else 0.5 for i in range(100)]  # crosses both levels every time
    fired = feed(eng, [reading(i * 5, v) for i, v in enumerate(values)])
    # raised, cleared, and the third change starts the episode: raised once more, then
    # the other 97 changes are held back
    assert [(f.phase, f.at) for f in fired] == [(RAISED, at(0)), (CLEARED, at(5)), (RAISED, at(10))]
    assert "flapping" in fired[2].text
    # it is raised as long as it flaps; quiet (it ended low) clears it once, via tick
    assert eng.tick(at(495 + 119)) == []
    fired = eng.tick(at(495 + 120))
    assert phases(fired) == [("level", CLEARED)]
    assert fired[0].first_seen == at(10) and "flapping ended" in fired[0].text
    assert eng.tick(at(2000)) == []
    # after the episode, changes are reported again
    fired = feed(eng, [reading(3000, 0.9), reading(3100, 0.5)])
    assert phases(fired) == [("level", RAISED), ("level", CLEARED)]


def test_without_flapping_guard_every_crossing_is_reported() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}]))
    values = [0.9 if i % 2 == 0 else 0.5 for i in range(10)]
    assert len(feed(eng, [reading(i, v) for i, v in enumerate(values)])) == 10


def test_flapping_that_ends_high_stays_raised_then_clears_normally() -> None:
    flap = {"max_changes": 4, "window_s": 300, "quiet_s": 60}
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "flapping": flap}]))
    seq = [0.9, 0.5, 0.9, 0.5, 0.9, 0.5, 0.9]  # R C R (C held: flapping) R C R ...
    fired = feed(eng, [reading(s, v) for s, v in enumerate(seq)])
    assert [f.phase for f in fired] == [RAISED, CLEARED, RAISED]
    # quiet and still high: nothing at the end of the episode
    assert feed(eng, [reading(100, 0.9)]) == [] and eng.tick(at(200)) == []
    assert phases(feed(eng, [reading(300, 0.5)])) == [("level", CLEARED)]


def test_quiet_end_and_a_new_change_at_once_give_both_events() -> None:
    flap = {"max_changes": 2, "window_s": 100, "quiet_s": 50}
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6, "flapping": flap}]))
    fired = feed(eng, [reading(0, 0.9), reading(1, 0.5)])
    assert phases(fired) == [("level", RAISED)]
    # no tick: the next reading finds the episode over (cleared), then raises anew
    fired = feed(eng, [reading(100, 0.9)])
    assert [f.phase for f in fired] == [CLEARED, RAISED]


# --- engine ----------------------------------------------------------------


def test_unknown_device_or_wrong_type_is_a_bad_reading() -> None:
    eng = engine(kind([]))
    with pytest.raises(BadReading) as err:
        eng.observe(reading(0, 1.0, device_id="nope"))
    assert err.value.reason is RejectReason.UNKNOWN_DEVICE
    with pytest.raises(BadReading) as err:
        eng.observe(reading(0, 1.0, device_type="smoke"))
    assert err.value.reason is RejectReason.UNKNOWN_DEVICE and "gauge" in err.value.detail


def test_device_time_is_used_when_trustworthy() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}]))
    good = reading(100, 0.9, device_time=at(95))
    assert eng.reading_time(good) == at(95)
    assert eng.observe(good)[0].at == at(95)
    skewed = reading(100, 0.9, device_time=at(100) + timedelta(hours=2))
    assert eng.reading_time(skewed) == at(100)


def test_firing_carries_bounded_readings_and_makes_an_alert() -> None:
    eng = engine(kind([{**LEVEL, "enter": 0.8, "exit": 0.6}]))
    fired = feed(eng, [reading(s, 0.1 + s / 100) for s in range(100)])
    f = fired[0]
    assert len(f.readings) == CONTEXT_READINGS
    assert f.readings[-1].value is not None and f.readings[-1].value > 0.8
    assert f.levels == (0.8, 0.6)
    place = Place(place_id="bridge-3", name="Bridge 3")
    alert = f.to_alert(place)
    assert isinstance(alert, Alert)
    assert (alert.source_id, alert.rule_id, alert.category, alert.phase) == (
        "d-1",
        "d-1.level",
        "water_level_high",
        RAISED,
    )
    assert alert.readings == f.readings and alert.first_seen == f.first_seen
    Alert.model_validate_json(alert.to_json_bytes())


def test_devices_are_independent() -> None:
    dtype = kind([{**LEVEL, "enter": 0.8, "exit": 0.6}])
    devs = [DeviceConfig(device_id=f"d-{i}", type="gauge", name="x") for i in range(3)]
    eng = SensorEngine(SensorRegistry({"gauge": dtype}, devs))
    assert len(eng.observe(reading(0, 0.9, device_id="d-0"))) == 1
    assert len(eng.observe(reading(1, 0.9, device_id="d-1"))) == 1
    assert eng.observe(reading(2, 0.9, device_id="d-0")) == []


def test_observe_is_fast() -> None:
    types = default_device_types()
    devs = [DeviceConfig(device_id=f"wl-{i}", type="water_level", name="x") for i in range(100)]
    eng = SensorEngine(SensorRegistry(types, devs), started_at=at(0))
    readings = [
        reading(
            i * 0.01,
            0.3 + (i % 7) / 10,
            battery=80,
            device_type="water_level",
            device_id=f"wl-{i % 100}",
        )
        for i in range(20_000)
    ]
    start = time.perf_counter()
    feed(eng, readings)
    eng.tick(at(300))
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{len(readings) / elapsed:.0f} readings/s"


# --- config ----------------------------------------------------------------


def test_threshold_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="exit"):
        ThresholdConfig.model_validate({**LEVEL, "enter": 0.6, "exit": 0.8})
    with pytest.raises(ValidationError, match="exit"):
        ThresholdConfig.model_validate({**LEVEL, "direction": "below", "enter": 0.8, "exit": 0.6})
    with pytest.raises(ValidationError, match="N <= M"):
        ThresholdConfig.model_validate({**LEVEL, "enter": 1, "exit": 0, "n_of_m": [5, 3]})
    with pytest.raises(ValidationError):
        ThresholdConfig.model_validate({**LEVEL, "enter": 1, "exit": 0, "surprise": 1})


def test_device_type_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="duplicate rule_id"):
        kind([{**LEVEL, "enter": 1, "exit": 0}, {**LEVEL, "enter": 2, "exit": 0}])
    with pytest.raises(ValidationError, match="not both"):
        kind([{"type": "heartbeat", "window_s": 60}], heartbeat_s=60)
    with pytest.raises(ValidationError, match="both raise and clear"):
        kind(
            [
                {
                    "type": "state",
                    "rule_id": "s",
                    "category": "c",
                    "raise_on": ["a"],
                    "clear_on": ["a"],
                }
            ]
        )
    with pytest.raises(ValidationError):
        kind([{"type": "nope", "rule_id": "x", "category": "y"}])


def test_default_device_types() -> None:
    types = default_device_types()
    assert set(types) == {
        "smoke",
        "water_level",
        "manhole_cover",
        "bin_fill",
        "door_contact",
        "ebike_charging",
        "noise",
    }
    for name, t in types.items():
        assert t.name == name and t.rules and t.heartbeat_s
        assert isinstance(t.effective_rules()[0], HeartbeatConfig)
        DeviceTypeConfig.model_validate(t.model_dump())  # round-trips as config


def test_overrides_apply_and_are_validated() -> None:
    rules = kind([{**LEVEL, "enter": 0.8, "exit": 0.6}, {"type": "low_battery"}]).effective_rules()
    new, problems = apply_overrides(rules, {"level.enter": 1.2, "battery.enter": 10})
    assert problems == []
    assert new[0].enter == 1.2 and new[1].enter == 10  # type: ignore[attr-defined]
    assert rules[0].enter == 0.8  # type: ignore[attr-defined]
    _, problems = apply_overrides(rules, {"level.exit": 2.0, "nope.enter": 1, "level.kind": 1})
    keys = [k for k, _ in problems]
    assert keys == ["level.exit", "nope.enter", "level.kind"]
    assert "must be <= enter" in problems[0][1]
    assert "no rule 'nope'" in problems[1][1]
    assert "'kind'" in problems[2][1] and "enter" in problems[2][1]


def test_toml_example_parses() -> None:
    doc = tomllib.loads(
        """
        [[device_types]]
        name = "water_level"
        unit = "m"
        vendor = "params"
        heartbeat_s = 900

        [[device_types.rules]]
        type = "threshold"
        rule_id = "level"
        category = "water_level_high"
        enter = 0.5
        exit = 0.4
        hold_s = 60
        n_of_m = [3, 5]
        flapping = { max_changes = 4, window_s = 600, quiet_s = 600 }

        [[device_types.rules]]
        type = "low_battery"
        enter = 20
        exit = 30

        [[devices]]
        device_id = "wl-1"
        type = "water_level"
        town = "town-1"
        place_id = "bridge-3"
        overrides = { "level.enter" = 0.8, "level.exit" = 0.6 }
        """
    )
    dtype = DeviceTypeConfig.model_validate(doc["device_types"][0])
    dev = DeviceConfig.model_validate(doc["devices"][0])
    reg = SensorRegistry({dtype.name: dtype}, [dev], [Place(place_id="bridge-3")])
    level = reg["wl-1"].rules[1]
    assert isinstance(level, ThresholdConfig) and (level.enter, level.exit) == (0.8, 0.6)
    assert isinstance(dtype.rules[0].flapping, FlappingConfig)


# --- chart -----------------------------------------------------------------


def test_readings_chart_is_an_svg_with_the_readings_and_threshold_lines() -> None:
    readings = [reading(s * 30, 0.4 + 0.05 * s) for s in range(12)]
    svg = ElementTree.fromstring(readings_chart(readings, 0.8, 0.6))
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.tag == f"{ns}svg" and svg.get("width") == "480"
    line = svg.find(f"{ns}polyline")
    assert line is not None and len(line.get("points", "").split()) == 12
    levels = svg.findall(f"{ns}line")
    assert [lv.get("stroke-dasharray") for lv in levels] == [None, "5 5"]  # enter, exit
    enter_y, exit_y = (float(lv.get("y1", "0")) for lv in levels)
    assert enter_y < exit_y  # 0.8 is drawn above 0.6
    ys = [float(p.split(",")[1]) for p in line.get("points", "").split()]
    assert ys == sorted(ys, reverse=True)  # rising readings go up the picture
    assert len(svg.findall(f"{ns}circle")) == 12
    # degenerate inputs still draw a well-formed chart
    for rs in ([], [readings[0]], [reading(0, None, state="alarm")]):
        ElementTree.fromstring(readings_chart(rs))
    batt = readings_chart(
        [reading(s, battery=50 - s) for s in range(5)], 20, 30, field="battery_pct"
    )
    batt_line = ElementTree.fromstring(batt).find(f"{ns}polyline")
    assert batt_line is not None and len(batt_line.get("points", "").split()) == 5
