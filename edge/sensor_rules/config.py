"""Configuration of sensor device types and their rules.

A device type (``[[device_types]]``) names its unit, payload style and rules;
the rules are a union discriminated on ``type`` (:data:`SensorRuleConfig`).
A device (:class:`ingest.device_config.DeviceConfig`) names its type and
place and may override any numeric field of its type's rules with
``"rule_id.field" = number``: :meth:`DeviceTypeConfig.resolve_rules` applies
those, and :data:`SensorRegistry` is the device registry over these types.
:func:`default_device_types` gives built-in types for the town's devices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from core.config import Problem, Section
from core.records import Slug
from edge.sensor_rules.base import FlappingConfig, SensorRuleBase
from edge.sensor_rules.battery import LowBatteryConfig
from edge.sensor_rules.heartbeat import HeartbeatConfig
from edge.sensor_rules.rate import RateOfChangeConfig
from edge.sensor_rules.registry import SensorRuleConfig
from edge.sensor_rules.state import StateConfig
from edge.sensor_rules.threshold import ThresholdConfig
from ingest.device_registry import DeviceRegistry, ResolvedDevice
from ingest.sensor_payload import PayloadSpec

#: rule fields an override may not change
FIXED_FIELDS = frozenset({"type", "rule_id", "category", "flapping", "field", "direction"})


class DeviceTypeConfig(Section):
    """A kind of neuron device: its unit, payload style and rules."""

    name: Slug = Field(description="The type segment of the topic, e.g. water_level")
    unit: str = Field(default="", description="Unit of value, e.g. m")
    vendor: Literal["flat", "params"] = Field(
        default="flat", description='Payload style: flat JSON or nested {"params": {...}}'
    )
    value_key: str = Field(
        default="value",
        min_length=1,
        max_length=64,
        description="Key of the measurement in the payload (inside params), e.g. level",
    )
    heartbeat_s: float | None = Field(
        default=None,
        gt=0,
        description="Offline after this many seconds without a message (adds a heartbeat rule)",
    )
    rules: list[SensorRuleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_rules(self) -> DeviceTypeConfig:
        seen: set[str] = set()
        for r in self.rules:
            if r.rule_id in seen:
                raise ValueError(f"duplicate rule_id '{r.rule_id}'")
            seen.add(r.rule_id)
        if self.heartbeat_s is not None and any(isinstance(r, HeartbeatConfig) for r in self.rules):
            raise ValueError("give heartbeat_s or a heartbeat rule, not both")
        return self

    def payload_spec(self) -> PayloadSpec:
        """How this type's payloads are read."""
        return PayloadSpec(vendor=self.vendor, value_key=self.value_key, unit=self.unit)

    def effective_rules(self) -> list[SensorRuleBase]:
        """The rules, with the heartbeat rule that ``heartbeat_s`` stands for."""
        rules: list[SensorRuleBase] = list(self.rules)
        if self.heartbeat_s is not None:
            rules.insert(0, HeartbeatConfig(type="heartbeat", window_s=self.heartbeat_s))
        return rules

    def resolve_rules(
        self, overrides: Mapping[str, float]
    ) -> tuple[list[SensorRuleBase], list[Problem]]:
        """A device's rules: :meth:`effective_rules` with its ``overrides`` applied."""
        return apply_overrides(self.effective_rules(), overrides)


def _field_value(annotation: Any, value: float) -> float | int:
    if annotation is int and float(value).is_integer():
        return int(value)
    return value


def apply_overrides(
    rules: list[SensorRuleBase], overrides: Mapping[str, float]
) -> tuple[list[SensorRuleBase], list[Problem]]:
    """Rules with ``overrides`` applied and re-validated, and the problems (key, message)."""
    by_id = {r.rule_id: i for i, r in enumerate(rules)}
    out = list(rules)
    problems: list[Problem] = []
    for key, value in overrides.items():
        rule_id, _, name = key.rpartition(".")
        i = by_id.get(rule_id)
        if i is None:
            known = ", ".join(sorted(by_id)) or "none"
            problems.append((key, f"no rule '{rule_id}' in the device type (rules: {known})"))
            continue
        rule = out[i]
        fields = type(rule).model_fields
        if name not in fields or name in FIXED_FIELDS:
            numeric = sorted(
                n
                for n, f in fields.items()
                if n not in FIXED_FIELDS and f.annotation in (float, int, float | None)
            )
            problems.append((key, f"rule '{rule_id}' has no numeric field '{name}' ({numeric})"))
            continue
        data = dict(rule)
        data[name] = _field_value(fields[name].annotation, value)
        try:
            out[i] = type(rule).model_validate(data)
        except ValidationError as exc:
            msg = "; ".join(e["msg"] for e in exc.errors())
            problems.append((key, f"{value:g}: {msg}"))
    return out, problems


def _battery() -> LowBatteryConfig:
    return LowBatteryConfig(type="low_battery")


def _tamper(*clear_on: str) -> StateConfig:
    return StateConfig(
        type="state",
        rule_id="tamper",
        category="device_tamper",
        raise_on=["tamper"],
        clear_on=list(clear_on),
    )


def _flapping() -> FlappingConfig:
    return FlappingConfig(max_changes=4, window_s=600.0, quiet_s=600.0)


def _types() -> Iterator[DeviceTypeConfig]:
    yield DeviceTypeConfig(
        name="smoke",
        heartbeat_s=3600.0,
        rules=[
            StateConfig(
                type="state",
                rule_id="alarm",
                category="smoke_alarm",
                raise_on=["alarm", "smoke", "fire"],
                clear_on=["normal"],
            ),
            _tamper("normal"),
            _battery(),
        ],
    )
    yield DeviceTypeConfig(
        name="water_level",
        unit="m",
        heartbeat_s=900.0,
        rules=[
            ThresholdConfig(
                type="threshold",
                rule_id="level",
                category="water_level_high",
                enter=0.5,
                exit=0.4,
                n_of_m=[2, 3],
                flapping=_flapping(),
            ),
            RateOfChangeConfig(
                type="rate_of_change",
                rule_id="rise",
                category="water_level_rising",
                max_per_min=0.02,
                window_s=600.0,
                min_span_s=120.0,
            ),
            _battery(),
        ],
    )
    yield DeviceTypeConfig(
        name="manhole_cover",
        unit="deg",
        heartbeat_s=3600.0,
        rules=[
            StateConfig(
                type="state",
                rule_id="open",
                category="manhole_cover_open",
                raise_on=["open", "displaced"],
                clear_on=["closed", "normal"],
            ),
            ThresholdConfig(
                type="threshold",
                rule_id="tilt",
                category="manhole_cover_tilted",
                enter=15.0,
                exit=5.0,
                n_of_m=[2, 3],
            ),
            _tamper("normal", "closed"),
            _battery(),
        ],
    )
    yield DeviceTypeConfig(
        name="bin_fill",
        unit="%",
        heartbeat_s=3600.0 * 6,
        rules=[
            ThresholdConfig(
                type="threshold",
                rule_id="fill",
                category="bin_overflow",
                enter=85.0,
                exit=60.0,
                hold_s=600.0,
            ),
            _battery(),
        ],
    )
    yield DeviceTypeConfig(
        name="door_contact",
        heartbeat_s=3600.0,
        rules=[
            StateConfig(
                type="state",
                rule_id="open_too_long",
                category="door_open_too_long",
                raise_on=["open"],
                clear_on=["closed"],
                for_s=600.0,
            ),
            _tamper("normal", "closed"),
            _battery(),
        ],
    )
    yield DeviceTypeConfig(
        name="ebike_charging",
        unit="C",
        heartbeat_s=600.0,
        rules=[
            ThresholdConfig(
                type="threshold",
                rule_id="temperature",
                category="ebike_charging_overheat",
                enter=60.0,
                exit=50.0,
                hold_s=30.0,
                flapping=_flapping(),
            ),
            StateConfig(
                type="state",
                rule_id="alarm",
                category="ebike_charging_fire",
                raise_on=["alarm", "smoke", "fire"],
                clear_on=["normal"],
            ),
        ],
    )
    yield DeviceTypeConfig(
        name="noise",
        unit="dB",
        heartbeat_s=900.0,
        rules=[
            ThresholdConfig(
                type="threshold",
                rule_id="loud",
                category="noise_nuisance",
                enter=75.0,
                exit=70.0,
                hold_s=300.0,
                flapping=_flapping(),
            ),
        ],
    )


def default_device_types() -> dict[str, DeviceTypeConfig]:
    """Built-in device types: smoke, water_level, manhole_cover, bin_fill, door_contact,
    ebike_charging and noise."""
    return {t.name: t for t in _types()}


#: The device registry over sensor device types (see :mod:`ingest.device_registry`).
SensorRegistry = DeviceRegistry[DeviceTypeConfig, SensorRuleBase]
SensorDevice = ResolvedDevice[DeviceTypeConfig, SensorRuleBase]
