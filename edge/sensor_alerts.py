"""Neuron readings in, sensor alerts out, one threshold rule per device."""

from __future__ import annotations

from edge.sensor_rule import ThresholdRule
from ingest.sensor_payload import BadReading, RejectReason
from streetwatch.config import Config
from streetwatch.records import Alert, Place, SensorReading, SourceKind


class SensorAlerts:
    def __init__(self, cfg: Config) -> None:
        self.rules = {s.device_id: ThresholdRule(s) for s in cfg.sensors}
        self.places: dict[str, Place] = {s.device_id: cfg.place(s.place) for s in cfg.sensors}

    def observe(self, reading: SensorReading) -> Alert | None:
        rule = self.rules.get(reading.device_id)
        if rule is None or rule.cfg.device_type != reading.device_type:
            raise BadReading(
                RejectReason.UNKNOWN_DEVICE,
                f"no {reading.device_type} device '{reading.device_id}' in [[sensors]]",
            )
        fired = rule.observe(reading)
        if fired is None:
            return None
        at = reading.device_time or reading.received_at
        place = self.places[reading.device_id]
        rule_id = f"{reading.device_id}.threshold"
        return Alert(
            alert_id=Alert.make_id(reading.device_id, rule_id, place.place_id, at),
            category=rule.cfg.category,
            place=place,
            source_kind=SourceKind.SENSOR,
            source_id=reading.device_id,
            rule_id=rule_id,
            rule_text=rule.text,
            first_seen=at,
            observed_at=at,
            confidence=1.0,
            readings=fired,
        )
