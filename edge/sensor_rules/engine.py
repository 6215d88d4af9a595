"""Runs each device's rules over its readings and over passing time.

:meth:`SensorEngine.observe` judges one reading with the rules of its
device; :meth:`SensorEngine.tick` lets time pass (heartbeat loss, a state
held too long, a flapping episode going quiet). Both return
:class:`SensorFiring` events, RAISED or CLEARED; nothing reads the clock.

The time of a reading is its device time when that is within
``max_skew_s`` of when it was received, else its receive time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from core.records import (
    Alert,
    AlertPhase,
    Evidence,
    Place,
    SensorReading,
    SourceKind,
)
from edge.sensor_rules.base import FlappingGuard, RuleEvent, SensorRule
from edge.sensor_rules.config import SensorDevice, SensorRegistry
from edge.sensor_rules.heartbeat import HeartbeatRule
from edge.sensor_rules.registry import build_rule
from ingest.sensor_payload import BadReading, RejectReason

#: readings an event carries: the device's most recent ones
CONTEXT_READINGS = 20


@dataclass(frozen=True, slots=True)
class SensorFiring:
    """A device's rule raised or cleared.

    ``readings`` are the device's most recent readings (at most
    :data:`CONTEXT_READINGS`), the last one being the reading that fired it
    (for a tick: the last one heard). ``levels`` and ``field`` say what to
    chart (:func:`edge.sensor_rules.chart.readings_chart`).
    """

    device_id: str
    device_type: str
    rule_id: str
    category: str
    phase: AlertPhase
    at: datetime
    first_seen: datetime
    text: str
    readings: tuple[SensorReading, ...]
    levels: tuple[float, float] | None = None
    field: str = "value"

    def to_alert(self, place: Place, evidence: tuple[Evidence, ...] = ()) -> Alert:
        """The wire alert of this firing at ``place``."""
        rule_id = f"{self.device_id}.{self.rule_id}"
        return Alert(
            alert_id=Alert.make_id(
                self.device_id, f"{rule_id}.{self.phase}", place.place_id, self.at
            ),
            category=self.category,
            place=place,
            source_kind=SourceKind.SENSOR,
            source_id=self.device_id,
            rule_id=rule_id,
            rule_text=self.text,
            first_seen=self.first_seen,
            observed_at=self.at,
            confidence=1.0,
            phase=self.phase,
            evidence=evidence,
            readings=self.readings,
        )


class _Slot:
    """One rule of one device, with its flapping guard."""

    __slots__ = ("guard", "rule")

    def __init__(self, rule: SensorRule) -> None:
        self.rule = rule
        flapping = rule.cfg.flapping
        self.guard = FlappingGuard(flapping) if flapping is not None else None


class _Device:
    __slots__ = ("recent", "resolved", "slots", "type_name")

    def __init__(self, resolved: SensorDevice, context: int) -> None:
        self.resolved = resolved
        self.type_name = resolved.type.name
        unit = resolved.type.unit
        rules = [build_rule(c, unit) for c in resolved.rules]
        # heartbeat first: a returning device is back online before anything else it says
        rules.sort(key=lambda r: not isinstance(r, HeartbeatRule))
        self.slots = [_Slot(r) for r in rules]
        self.recent: deque[SensorReading] = deque(maxlen=context)


class SensorEngine:
    def __init__(
        self,
        registry: SensorRegistry,
        *,
        started_at: datetime | None = None,
        max_skew_s: float = 300.0,
        context: int = CONTEXT_READINGS,
    ) -> None:
        """``started_at``: count heartbeat silence from here for devices never heard from
        (none = a device is watched for silence only after its first message)."""
        self.registry = registry
        self.max_skew_s = max_skew_s
        self._devices = {d.device.device_id: _Device(d, context) for d in registry}
        self._tickers: list[tuple[_Device, _Slot]] = [
            (dev, slot)
            for dev in self._devices.values()
            for slot in dev.slots
            if slot.rule.ticks or slot.guard is not None
        ]
        if started_at is not None:
            for dev in self._devices.values():
                for slot in dev.slots:
                    if isinstance(slot.rule, HeartbeatRule):
                        slot.rule.start(started_at)

    def reading_time(self, reading: SensorReading) -> datetime:
        """Device time if it is within max_skew_s of the receive time, else receive time."""
        dt = reading.device_time
        rx = reading.received_at
        if dt is not None and abs((dt - rx).total_seconds()) <= self.max_skew_s:
            return dt
        return rx

    def observe(self, reading: SensorReading) -> list[SensorFiring]:
        dev = self._devices.get(reading.device_id)
        if dev is None:
            raise BadReading(
                RejectReason.UNKNOWN_DEVICE, f"no device '{reading.device_id}' in the registry"
            )
        if dev.type_name != reading.device_type:
            raise BadReading(
                RejectReason.UNKNOWN_DEVICE,
                f"device '{reading.device_id}' is a {dev.type_name}, not {reading.device_type}",
            )
        dev.recent.append(reading)
        t = self.reading_time(reading)
        out: list[SensorFiring] = []
        for slot in dev.slots:
            event = slot.rule.observe(reading, t)
            guard = slot.guard
            if guard is None:
                if event is not None:
                    out.append(self._firing(dev, slot.rule, event))
            else:
                for e in guard.filter(t, event):
                    out.append(self._firing(dev, slot.rule, e))
        return out

    def tick(self, now: datetime) -> list[SensorFiring]:
        """Let time pass up to ``now`` (the receive clock); call it every second or so."""
        out: list[SensorFiring] = []
        for dev, slot in self._tickers:
            event = slot.rule.tick(now) if slot.rule.ticks else None
            guard = slot.guard
            if guard is None:
                if event is not None:
                    out.append(self._firing(dev, slot.rule, event))
                continue
            for e in guard.filter(now, event) if event is not None else _opt(guard.tick(now)):
                out.append(self._firing(dev, slot.rule, e))
        return out

    @staticmethod
    def _firing(dev: _Device, rule: SensorRule, event: RuleEvent) -> SensorFiring:
        text = f"{dev.type_name} {rule.text}"
        if event.note:
            text += f": {event.note}"
        return SensorFiring(
            device_id=dev.resolved.device.device_id,
            device_type=dev.type_name,
            rule_id=rule.cfg.rule_id,
            category=rule.cfg.category,
            phase=event.phase,
            at=event.at,
            first_seen=event.first_seen,
            text=text,
            readings=tuple(dev.recent),
            levels=rule.levels,
            field=rule.field,
        )


def _opt(event: RuleEvent | None) -> tuple[RuleEvent, ...]:
    return () if event is None else (event,)
