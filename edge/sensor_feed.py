"""Neuron messages in, sensor alerts and dead letters out.

One :class:`SensorFeed` takes each raw MQTT message through the whole
sensor path, in order:

1. :class:`~ingest.sensor_payload.SensorParser`: topic layout, size,
   JSON, the device type's payload style;
2. :class:`~ingest.reading_checks.ReadingChecks`: unknown device,
   clock skew, duplicate, out of order;
3. :class:`~edge.sensor_rules.engine.SensorEngine`: the device's rules.

A message rejected at any step becomes a :class:`DeadLetter` with its
reason (counted per reason); a rule that raises or clears becomes an
:class:`Alert` at the device's place, with the triggering readings.
:meth:`with_chart` adds a chart of them to a raised alert (SVG, sha256 in
the alert); it is kept apart so that drawing and writing the file happen
off the thread that takes messages in. :meth:`tick` lets time pass for
heartbeat loss and states held too long.

:meth:`handle` and :meth:`tick` are not thread-safe: call them from one
thread at a time (the MQTT client's callback thread, :meth:`tick` under
the same lock). :meth:`with_chart` may run on any thread.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core.records import Alert, AlertPhase, DeadLetter, Evidence, EvidenceKind
from edge.config import EdgeServiceConfig
from edge.dead_letters import DeadLetters, MemoryDeadLetterSink
from edge.sensor_rules.chart import MEDIA_TYPE as CHART_MEDIA_TYPE
from edge.sensor_rules.chart import readings_chart
from edge.sensor_rules.config import SensorRegistry
from edge.sensor_rules.engine import SensorEngine, SensorFiring
from ingest.reading_checks import ReadingChecks
from ingest.sensor_payload import BadReading, SensorParser
from ingest.topic_layout import TopicLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedAlert:
    """An alert, and the firing to chart into it (None: nothing to chart)."""

    alert: Alert
    chart: SensorFiring | None = None


@dataclass
class FeedOutput:
    """What one message or tick produced."""

    alerts: list[FeedAlert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class SensorFeed:
    def __init__(
        self,
        cfg: EdgeServiceConfig,
        evidence_dir: Path,
        *,
        started_at: datetime | None = None,
        registry: SensorRegistry | None = None,
        charts: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else cfg.device_registry()
        types = {d.type.name: d.type for d in self.registry}
        self.parser = SensorParser(
            TopicLayout(cfg.neuron.topic),
            specs={name: t.payload_spec() for name, t in types.items()},
            max_bytes=cfg.mqtt.max_payload_bytes,
        )
        known = {d.device.device_id for d in self.registry}
        self.checks = ReadingChecks(cfg.neuron.checks, known_devices=known)
        self.engine = SensorEngine(
            self.registry, started_at=started_at, max_skew_s=cfg.neuron.checks.max_skew_s
        )
        # letters are made and counted here; the caller sends them
        self.letters = DeadLetters(cfg.edge.box_id, MemoryDeadLetterSink())
        self.evidence_dir = evidence_dir / "sensors"
        self.charts = charts
        self.readings = 0
        self.fired: Counter[str] = Counter()

    @property
    def rejects(self) -> Counter[str]:
        """Rejected messages per reason."""
        return self.letters.counts

    def handle(self, topic: str, payload: bytes, received_at: datetime) -> FeedOutput:
        out = FeedOutput()
        try:
            reading = self.parser.parse(topic, payload, received_at)
            self.checks.check(reading)
            firings = self.engine.observe(reading)
        except BadReading as bad:
            out.dead.append(self.letters.letter(topic, payload, bad, received_at))
            log.debug("event=reading_rejected reason=%s topic=%.120s", bad.reason, topic)
            return out
        self.readings += 1
        out.alerts.extend(self._alert(f) for f in firings)
        return out

    def tick(self, now: datetime) -> FeedOutput:
        return FeedOutput(alerts=[self._alert(f) for f in self.engine.tick(now)])

    def _alert(self, firing: SensorFiring) -> FeedAlert:
        self.fired[f"{firing.category}.{firing.phase}"] += 1
        alert = firing.to_alert(self.registry[firing.device_id].place)
        if self.charts and firing.phase is AlertPhase.RAISED and firing.readings:
            return FeedAlert(alert, firing)
        return FeedAlert(alert)

    def with_chart(self, item: FeedAlert) -> Alert:
        """The alert with its chart as evidence (drawn and written here), if it has one."""
        if item.chart is None:
            return item.alert
        chart = self._chart(item.chart)
        return item.alert.model_copy(update={"evidence": (*item.alert.evidence, chart)})

    def _chart(self, firing: SensorFiring) -> Evidence:
        enter, exit_ = firing.levels if firing.levels is not None else (None, None)
        svg = readings_chart(firing.readings, enter, exit_, field=firing.field)
        digest = hashlib.sha256(svg).hexdigest()
        folder = self.evidence_dir / firing.device_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{firing.rule_id}-{digest[:16]}.svg"
        path.write_bytes(svg)
        return Evidence(
            kind=EvidenceKind.READINGS,
            path=str(path),
            sha256=digest,
            media_type=CHART_MEDIA_TYPE,
            captured_at=firing.at,
            size=len(svg),
        )
