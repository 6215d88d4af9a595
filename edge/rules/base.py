"""What every camera rule shares: its zone, hours, dwell and repeat timing.

A rule plugin is one module holding its config (a :class:`RuleBase`
subclass with a ``type`` literal) and its class (a :class:`ZoneRule`
subclass). The subclass only says whether its condition holds now, since
when, and which detections show it (:meth:`ZoneRule.condition`); this base
decides when to fire:

- outside the rule's active hours nothing fires and its memory is cleared;
- once the condition has held ``dwell_s`` it fires, on a frame where
  something shows it (so the snapshot is evidence), then again every
  ``repeat_every_s`` while it holds; the case pipeline folds the repeats
  into one case;
- when the condition ends, the episode ends: a later return fires anew
  after a full dwell (and the pipeline decides whether that is the same
  case).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import Field, field_validator

from core.config import Section
from core.plugins import Plugins
from core.records import Slug
from detectors.detections import Detections
from edge.schedule import ActiveHours, parse_range
from edge.zones import Zone


class RuleBase(Section):
    """Keys every camera rule has."""

    rule_id: Slug
    zone: Slug = Field(description="zone_id on the same camera")
    category: Slug = Field(description="Case category it raises")
    min_score: float = Field(default=0.3, gt=0, le=1, description="Weaker detections are ignored")
    dwell_s: float = Field(default=60.0, gt=0, description="Seconds the condition must hold")
    repeat_every_s: float = Field(
        default=60.0, gt=0, description="While it holds, raise again this often"
    )
    grace_s: float = Field(
        default=5.0, ge=0, description="Seconds something may go unseen and keep its dwell"
    )
    active_hours: list[str] = Field(
        default_factory=list,
        description='Local "HH:MM-HH:MM" ranges when the rule applies; empty = always',
    )

    @field_validator("active_hours")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for r in v:
            parse_range(r)
        return v


@dataclass(frozen=True)
class Firing:
    """The rule fired: since when, and which detections show it."""

    first_seen: datetime
    detections: Detections
    first_of_episode: bool


@dataclass(frozen=True)
class Holding:
    """The condition holds, since ``since``; ``shown`` are its detections in this frame."""

    since: datetime
    shown: Detections


class HeldCondition:
    """Since when a yes/no condition has held, forgiving gaps up to ``grace_s``."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: datetime | None = None
        self.last_true: datetime | None = None

    def update(self, now: datetime, true: bool) -> datetime | None:
        if true:
            if self.since is None:
                self.since = now
            self.last_true = now
        elif self.last_true is not None and (now - self.last_true).total_seconds() > self.grace_s:
            self.since = self.last_true = None
        return self.since

    def clear(self) -> None:
        self.since = self.last_true = None


class ZoneRule:
    """Base of the camera rules; subclasses implement :meth:`condition`."""

    def __init__(self, cfg: RuleBase, zone: Zone, timezone: str) -> None:
        self.cfg = cfg
        self.zone = zone
        self.hours = ActiveHours(cfg.active_hours, timezone)
        self.last_fired: datetime | None = None

    @property
    def text(self) -> str:
        hours = f", {'/'.join(self.cfg.active_hours)}" if self.cfg.active_hours else ""
        return f"{self.describe()} in zone {self.zone.zone_id} for >= {self.cfg.dwell_s:g}s{hours}"

    def describe(self) -> str:
        raise NotImplementedError

    def in_zone(self, dets: Detections, classes: frozenset[str]) -> Detections:
        """Detections of ``classes`` scoring at least min_score that stand in the zone."""
        picked = dets.of_classes(classes)
        picked = picked[picked.scores >= self.cfg.min_score]
        return picked[self.zone.anchored_in(picked)]

    def condition(self, now: datetime, dets: Detections) -> Holding | None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything (outside active hours)."""
        self.last_fired = None

    def observe(self, now: datetime, dets: Detections) -> Firing | None:
        if not self.hours.active(now):
            self.reset()
            return None
        holding = self.condition(now, dets)
        if holding is None:
            self.last_fired = None
            return None
        if (now - holding.since).total_seconds() < self.cfg.dwell_s or not len(holding.shown):
            return None
        if (
            self.last_fired is not None
            and (now - self.last_fired).total_seconds() < self.cfg.repeat_every_s
        ):
            return None
        first = self.last_fired is None
        self.last_fired = now
        return Firing(first_seen=holding.since, detections=holding.shown, first_of_episode=first)


#: The camera rule plugins: each registers its config class with its rule class
#: (``@CAMERA_RULES.register(Config)``); :mod:`edge.rules.registry` lists them.
#: A rule is built from its config, its zone and the camera's time zone.
CAMERA_RULES: Plugins[RuleBase, [Zone, str], ZoneRule] = Plugins("camera rule")
