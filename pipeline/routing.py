"""Routing: which department owns a case, who assists, how urgent it is.

The responsibility list (履职清单) maps category x grid to an owning
department and assisting ones. It is configuration: ``[[routing.rules]]``
lines come first, then the built-in list below (typical owners from the
town's practice). The most specific line wins: one for the case's micro
grid, then small, medium, large, then one for the category everywhere.
Nothing matching goes to ``default_owner`` (the centre designates, 首接责任制).

Urgency is 1 (most urgent) to 4 (routine) per category, overridable per
line, so that e.g. a stall by a school gate can be more urgent than
elsewhere.
"""

from __future__ import annotations

from core.records import GridRef, Route
from pipeline.config import RoutingConfig, RoutingRuleConfig

BUILT_IN_RULES: tuple[RoutingRuleConfig, ...] = (
    RoutingRuleConfig(category="illegal_stall", owner="城管中队", assisting=["市场监管所"]),
    RoutingRuleConfig(category="piled_goods", owner="城管中队", assisting=["居委会"]),
    RoutingRuleConfig(category="illegal_parking", owner="交警"),
    RoutingRuleConfig(category="disorderly_non_motor", owner="城管中队", assisting=["物业"]),
    RoutingRuleConfig(category="crowd_gathering", owner="派出所"),
    RoutingRuleConfig(category="smoke_alarm", owner="派出所", assisting=["物业"]),
    RoutingRuleConfig(category="water_level_high", owner="绿化市容所", assisting=["居委会"]),
    RoutingRuleConfig(category="water_level_rising", owner="绿化市容所"),
    RoutingRuleConfig(category="manhole_cover_open", owner="绿化市容所"),
    RoutingRuleConfig(category="manhole_cover_tilted", owner="绿化市容所"),
    RoutingRuleConfig(category="bin_overflow", owner="环卫公司"),
    RoutingRuleConfig(category="door_open_too_long", owner="物业"),
    RoutingRuleConfig(category="ebike_charging_overheat", owner="派出所", assisting=["物业"]),
    RoutingRuleConfig(category="ebike_charging_fire", owner="派出所", assisting=["物业"]),
    RoutingRuleConfig(category="noise_nuisance", owner="派出所", assisting=["居委会"]),
)

BUILT_IN_URGENCY: dict[str, int] = {
    "smoke_alarm": 1,
    "ebike_charging_fire": 1,
    "manhole_cover_open": 1,
    "ebike_charging_overheat": 2,
    "water_level_high": 2,
    "crowd_gathering": 2,
    "manhole_cover_tilted": 2,
    "water_level_rising": 3,
    "illegal_parking": 3,
    "illegal_stall": 3,
    "piled_goods": 3,
    "noise_nuisance": 3,
    "disorderly_non_motor": 4,
    "bin_overflow": 4,
    "door_open_too_long": 4,
}

_GRID_LEVELS = ("micro", "small", "medium", "large")


class Router:
    def __init__(self, cfg: RoutingConfig) -> None:
        self.cfg = cfg
        self.rules = (*cfg.rules, *BUILT_IN_RULES)
        self.urgency = {**BUILT_IN_URGENCY, **cfg.urgency}

    def route(self, category: str, grids: GridRef) -> Route:
        best: tuple[int, RoutingRuleConfig] | None = None
        for rule in self.rules:
            if rule.category != category:
                continue
            rank = _specificity(rule, grids)
            if rank is None:
                continue
            # more specific wins; among equals the earlier line (config before built-in)
            if best is None or rank < best[0]:
                best = (rank, rule)
        urgency = self.urgency.get(category, self.cfg.default_urgency)
        if best is None:
            return Route(owner=self.cfg.default_owner, urgency=urgency, matched="default")
        rule = best[1]
        where = f"grid {rule.grid}" if rule.grid else "everywhere"
        return Route(
            owner=rule.owner,
            assisting=tuple(rule.assisting),
            urgency=rule.urgency or urgency,
            matched=f"{category} {where}",
        )


def _specificity(rule: RoutingRuleConfig, grids: GridRef) -> int | None:
    """0 (micro grid) .. 3 (large grid), 4 for no grid; None when it does not apply."""
    if rule.grid is None:
        return len(_GRID_LEVELS)
    for rank, level in enumerate(_GRID_LEVELS):
        if getattr(grids, level) == rule.grid:
            return rank
    return None
