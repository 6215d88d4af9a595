"""What every sensor rule shares: its id, category, flapping guard and event shape.

A rule plugin is one module holding its config (a :class:`SensorRuleBase`
subclass with a ``type`` literal) and its class (a :class:`SensorRule`
subclass). Rules are pure: the time of a reading (``t``) or of a tick
(``now``) is passed in, they never read the clock, and each call does a
small, bounded amount of work.

A rule reports *transitions* only: :class:`RuleEvent` RAISED when its
condition begins, CLEARED when it ends. Between the two it says nothing,
so a condition that persists is one alert, not one per reading. The
optional flapping guard (:class:`FlappingGuard`) sits between a rule and
the engine and folds a condition that keeps coming and going into one
episode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from core.config import Section
from core.plugins import Plugins
from core.records import AlertPhase, SensorReading, Slug


class FlappingConfig(Section):
    """Suppress a rule whose condition keeps coming and going.

    ``max_changes`` raise/clear changes within ``window_s`` start a flapping
    episode: the condition is raised once (if it is not already) and every
    further change is held back until no change happened for ``quiet_s``;
    then the rule is cleared if its condition has ended.
    """

    max_changes: int = Field(default=4, ge=2, le=1000, description="Changes that count as flapping")
    window_s: float = Field(default=600.0, gt=0, description="Within this many seconds")
    quiet_s: float = Field(
        default=600.0, gt=0, description="The episode ends after this long without a change"
    )


class SensorRuleBase(Section):
    """Keys every sensor rule has."""

    rule_id: Slug = Field(description="Names the rule within its device type; overrides use it")
    category: Slug = Field(description="Case category it raises, e.g. water_level_high")
    flapping: FlappingConfig | None = Field(
        default=None, description="Flapping suppression; none = every change is reported"
    )


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """A rule's condition began (RAISED) or ended (CLEARED) at ``at``.

    ``first_seen`` is when the condition began (for a CLEARED event, the
    start of the episode it ends); ``note`` adds words for the reviewer.
    """

    phase: AlertPhase
    first_seen: datetime
    at: datetime
    note: str = ""


class SensorRule:
    """Base of the sensor rules: subclasses implement :meth:`observe` and maybe :meth:`tick`."""

    #: whether :meth:`tick` can produce events (the engine only ticks these rules)
    ticks: bool = False

    def __init__(self, cfg: SensorRuleBase, unit: str = "") -> None:
        self.cfg = cfg
        self.unit = unit

    @property
    def text(self) -> str:
        """The rule in words, for the reviewer."""
        raise NotImplementedError

    @property
    def levels(self) -> tuple[float, float] | None:
        """(enter, exit) levels to draw on a chart, if the rule has them."""
        return None

    @property
    def field(self) -> str:
        """The reading field the rule watches (``value`` or ``battery_pct``)."""
        return "value"

    def observe(self, reading: SensorReading, t: datetime) -> RuleEvent | None:
        """Judge one reading of the device, taken at ``t``."""
        raise NotImplementedError

    def tick(self, now: datetime) -> RuleEvent | None:
        """Judge the passing of time (no reading arrived); ``now`` is the receive clock."""
        return None


class FlappingGuard:
    """Holds back the changes of a flapping rule; see :class:`FlappingConfig`.

    The guard tracks the rule's raw phase and the phase it last let through.
    Within an episode at most one RAISED is let through (on entry, if the
    last phase let through was CLEARED) and at most one CLEARED (at its end,
    if the raw condition is over by then).
    """

    def __init__(self, cfg: FlappingConfig) -> None:
        self.cfg = cfg
        self.changes: deque[datetime] = deque()
        self.raw: RuleEvent | None = None  # last raw event
        self.shown: AlertPhase = AlertPhase.CLEARED  # phase last let through
        self.shown_first_seen: datetime | None = None
        self.flapping = False
        self.last_change: datetime | None = None

    def _end_if_quiet(self, now: datetime) -> RuleEvent | None:
        if not self.flapping or self.last_change is None:
            return None
        if (now - self.last_change).total_seconds() < self.cfg.quiet_s:
            return None
        self.flapping = False
        self.changes.clear()
        raw = self.raw
        if raw is not None and raw.phase is AlertPhase.CLEARED and self.shown is AlertPhase.RAISED:
            self.shown = AlertPhase.CLEARED
            first = self.shown_first_seen or raw.first_seen
            return RuleEvent(AlertPhase.CLEARED, first, now, "flapping ended")
        return None

    def filter(self, t: datetime, event: RuleEvent | None) -> tuple[RuleEvent, ...]:
        """Pass, hold back or translate the rule's event (or none) at ``t``."""
        ended = self._end_if_quiet(t)
        out: tuple[RuleEvent, ...] = () if ended is None else (ended,)
        if event is None:
            return out
        self.raw = event
        self.last_change = t
        changes = self.changes
        changes.append(t)
        window = self.cfg.window_s
        while (t - changes[0]).total_seconds() > window:
            changes.popleft()
        if self.flapping:
            return out  # held back until quiet
        if len(changes) >= self.cfg.max_changes:
            self.flapping = True
            if self.shown is AlertPhase.CLEARED and event.phase is AlertPhase.RAISED:
                return (*out, self._show(event, "flapping: further changes held back"))
            return out
        if event.phase is self.shown:
            return out
        return (*out, self._show(event, event.note))

    def _show(self, event: RuleEvent, note: str) -> RuleEvent:
        self.shown = event.phase
        if event.phase is AlertPhase.RAISED:
            self.shown_first_seen = event.first_seen
            return RuleEvent(event.phase, event.first_seen, event.at, note)
        first = self.shown_first_seen or event.first_seen
        return RuleEvent(event.phase, first, event.at, note)

    def tick(self, now: datetime) -> RuleEvent | None:
        return self._end_if_quiet(now)


#: The sensor rule plugins: each registers its config class with its rule class
#: (``@SENSOR_RULES.register(Config)``); :mod:`edge.sensor_rules.registry` lists
#: them. A rule is built from its config and its device type's unit.
SENSOR_RULES: Plugins[SensorRuleBase, [str], SensorRule] = Plugins("sensor rule")
