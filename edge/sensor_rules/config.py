"""Configuration of sensor device types, their rules, and devices.

A device type (``[[device_types]]``) names its unit, payload style and rules;
the rules are a union discriminated on ``type`` (:data:`SensorRuleConfig`).
A device (``[[devices]]``, or a CSV/YAML file read by
:mod:`ingest.device_registry`) names its type and place and may override any
numeric field of its type's rules with ``"rule_id.field" = number``.
:func:`default_device_types` gives built-in types for the town's devices.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edge.sensor_rules.base import FlappingConfig
from edge.sensor_rules.battery import LowBatteryConfig
from edge.sensor_rules.heartbeat import HeartbeatConfig
from edge.sensor_rules.rate import RateOfChangeConfig
from edge.sensor_rules.state import StateConfig
from edge.sensor_rules.threshold import ThresholdConfig
from ingest.sensor_payload import PayloadSpec
from streetwatch.config_base import Section
from streetwatch.records import Slug

SensorRuleConfig = Annotated[
    ThresholdConfig | RateOfChangeConfig | StateConfig | HeartbeatConfig | LowBatteryConfig,
    Field(discriminator="type"),
]
AnyRuleConfig = (
    ThresholdConfig | RateOfChangeConfig | StateConfig | HeartbeatConfig | LowBatteryConfig
)

SENSOR_RULE_TYPES: frozenset[str] = frozenset(
    {"threshold", "rate_of_change", "state", "heartbeat", "low_battery"}
)

GridLevel = Literal["large", "medium", "small", "micro"]
OVERRIDE_KEY = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,127}\.[a-z_]+$")
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
        if self.heartbeat_s is not None and any(r.type == "heartbeat" for r in self.rules):
            raise ValueError("give heartbeat_s or a heartbeat rule, not both")
        return self

    def payload_spec(self) -> PayloadSpec:
        """How this type's payloads are read."""
        return PayloadSpec(vendor=self.vendor, value_key=self.value_key, unit=self.unit)

    def effective_rules(self) -> list[AnyRuleConfig]:
        """The rules, with the heartbeat rule that ``heartbeat_s`` stands for."""
        rules: list[AnyRuleConfig] = list(self.rules)
        if self.heartbeat_s is not None:
            rules.insert(0, HeartbeatConfig(type="heartbeat", window_s=self.heartbeat_s))
        return rules


class DeviceConfig(Section):
    """One device: its type, its place, and overrides of its type's rules.

    The place is either ``place_id`` of a ``[[places]]`` entry, or given
    inline with ``name``/``lat``/``lon``/``grids`` (its id is then
    ``place_id`` if given, else the device id).
    """

    device_id: Slug
    type: Slug = Field(description="name of its device type")
    town: str = Field(default="", description="Town segment of its topic")
    place_id: Slug | None = Field(default=None, description="A [[places]] entry, or the new id")
    name: str = Field(default="", description="Inline place: address or landmark")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Inline place: latitude")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Inline place: longitude")
    grids: dict[GridLevel, str] = Field(
        default_factory=dict, description="Inline place: grid id per level (大/中/小/微)"
    )
    overrides: dict[str, float] = Field(
        default_factory=dict,
        description='Numeric rule fields of its type to change, e.g. {"level.enter" = 0.8}',
    )

    @field_validator("overrides")
    @classmethod
    def _keys(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            if not OVERRIDE_KEY.match(key):
                raise ValueError(f"key '{key}' is not rule_id.field")
        return v

    @property
    def has_inline_place(self) -> bool:
        return bool(self.name or self.grids) or self.lat is not None or self.lon is not None


def _field_value(annotation: Any, value: float) -> float | int:
    if annotation is int and float(value).is_integer():
        return int(value)
    return value


def apply_overrides(
    rules: list[AnyRuleConfig], overrides: Mapping[str, float]
) -> tuple[list[AnyRuleConfig], list[tuple[str, str]]]:
    """Rules with ``overrides`` applied and re-validated, and the problems (key, message)."""
    by_id = {r.rule_id: i for i, r in enumerate(rules)}
    out = list(rules)
    problems: list[tuple[str, str]] = []
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
