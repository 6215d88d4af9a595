"""The camera rules: config union (discriminated on ``type``) and factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from edge.rules.base import RuleBase, ZoneRule
from edge.rules.class_map import ClassMapRule, ClassMapRuleConfig
from edge.rules.crowd import CrowdRule, CrowdRuleConfig
from edge.rules.non_motor import NonMotorRule, NonMotorRuleConfig
from edge.rules.parking import ParkingRule, ParkingRuleConfig
from edge.rules.piled_goods import PiledGoodsRule, PiledGoodsRuleConfig
from edge.rules.stall import StallRule, StallRuleConfig
from edge.zones import Zone

RuleConfig = Annotated[
    ParkingRuleConfig
    | StallRuleConfig
    | PiledGoodsRuleConfig
    | NonMotorRuleConfig
    | CrowdRuleConfig
    | ClassMapRuleConfig,
    Field(discriminator="type"),
]

_FACTORIES: dict[type[RuleBase], Callable[[Any, Zone, str], ZoneRule]] = {
    ParkingRuleConfig: ParkingRule,
    StallRuleConfig: StallRule,
    PiledGoodsRuleConfig: PiledGoodsRule,
    NonMotorRuleConfig: NonMotorRule,
    CrowdRuleConfig: CrowdRule,
    ClassMapRuleConfig: ClassMapRule,
}

RULE_TYPES: frozenset[str] = frozenset(
    str(cls.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]
    for cls in _FACTORIES
)


def build_rule(cfg: RuleBase, zone: Zone, timezone: str) -> ZoneRule:
    return _FACTORIES[type(cfg)](cfg, zone, timezone)
