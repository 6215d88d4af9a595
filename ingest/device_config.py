"""One neuron device as configured: ``[[devices]]`` or a row of a CSV/YAML device list.

Which rules it runs is its type's business (``edge.sensor_rules``); here are
its identity, its place and the overrides of its type's numeric rule fields.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from core.config import Section
from core.records import Slug

GridLevel = Literal["large", "medium", "small", "micro"]
OVERRIDE_KEY = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,127}\.[a-z_]+$")


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
