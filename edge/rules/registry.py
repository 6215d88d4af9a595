"""The rule configs a camera accepts, discriminated on ``type``."""

from __future__ import annotations

from edge.rules.parking import ParkingRuleConfig

RuleConfig = ParkingRuleConfig
