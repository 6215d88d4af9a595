"""The sensor rules: every plugin module, the config union (discriminated on
``type``) and the factory, all derived from the registrations in
:data:`edge.sensor_rules.base.SENSOR_RULES` (:mod:`core.plugins`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.sensor_rules import battery, heartbeat, rate, state, threshold
from edge.sensor_rules.base import SENSOR_RULES, SensorRule, SensorRuleBase

PLUGIN_MODULES = (threshold, rate, state, heartbeat, battery)

if TYPE_CHECKING:
    SensorRuleConfig = SensorRuleBase
else:
    SensorRuleConfig = SENSOR_RULES.config_union()

SENSOR_RULE_TYPES: frozenset[str] = SENSOR_RULES.tags


def build_rule(cfg: SensorRuleBase, unit: str = "") -> SensorRule:
    return SENSOR_RULES.build(cfg, unit)
