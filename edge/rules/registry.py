"""The camera rules: every plugin module, the config union (discriminated on
``type``) and the factory, all derived from the registrations in
:data:`edge.rules.base.CAMERA_RULES` (:mod:`core.plugins`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.rules import class_map, crowd, non_motor, parking, piled_goods, stall
from edge.rules.base import CAMERA_RULES, RuleBase, ZoneRule
from edge.zones import Zone

PLUGIN_MODULES = (parking, stall, piled_goods, non_motor, crowd, class_map)

if TYPE_CHECKING:
    RuleConfig = RuleBase
else:
    RuleConfig = CAMERA_RULES.config_union()

RULE_TYPES: frozenset[str] = CAMERA_RULES.tags


def build_rule(cfg: RuleBase, zone: Zone, timezone: str) -> ZoneRule:
    return CAMERA_RULES.build(cfg, zone, timezone)
