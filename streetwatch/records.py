"""Typed wire records: one per thing that flows between stages.

Every record that crosses a process boundary (MQTT, Kafka, files) is one of
these pydantic models, serialised as JSON with a ``schema_version``. The JSON
Schemas in ``docs/schemas/`` are generated from them
(``streetwatch schemas --write docs/schemas``) and a test keeps the two equal.

Records are frozen: a stage that wants a changed record builds a new one with
``model_copy(update=...)``, it never mutates what it was given.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1

Slug = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_.:-]{0,127}$",
        description="Lower-case identifier: letters, digits and _ . : -",
    ),
]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256, hex")]


class Record(BaseModel):
    """Base of every wire record: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode("utf-8")


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic identifier: the same parts always give the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]
    return f"{prefix}-{digest}"


class GridRef(Record):
    """The grid cells a place belongs to, one per level (大/中/小/微 网格)."""

    large: str | None = Field(default=None, description="大网格: the street/town")
    medium: str | None = Field(default=None, description="中网格: district")
    small: str | None = Field(default=None, description="小网格: neighbourhood or park")
    micro: str | None = Field(default=None, description="微网格: micro-grid")


class Place(Record):
    """Where a problem is: a camera zone or a sensor's location."""

    place_id: Slug = Field(description="Stable id of the place; the dedup key")
    name: str = Field(default="", description="Human-readable name (address, landmark)")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    grids: GridRef = Field(default_factory=GridRef)


class EvidenceKind(StrEnum):
    SNAPSHOT = "snapshot"
    CLIP = "clip"
    READINGS = "readings"


class Evidence(Record):
    """One piece of evidence: a file (snapshot, clip) with its digest."""

    kind: EvidenceKind
    path: str = Field(description="Path of the file on the edge box's evidence store")
    sha256: Sha256Hex
    media_type: str = Field(description="MIME type, e.g. image/jpeg")
    captured_at: AwareDatetime


class BoundingBox(Record):
    """An axis-aligned box in pixel coordinates of the analysed frame."""

    x1: float
    y1: float
    x2: float
    y2: float


class DetectionRecord(Record):
    """One detected object, as carried inside an alert."""

    label: str = Field(description="Class name, e.g. car")
    class_id: int = Field(ge=0)
    score: float = Field(ge=0, le=1)
    box: BoundingBox
    track_id: int | None = Field(
        default=None, ge=0, description="The tracker's id for this object on this camera"
    )


class SensorReading(Record):
    """One reading from a neuron (IoT) device, as received over MQTT."""

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: Slug
    device_type: Slug = Field(description="e.g. water_level, smoke, manhole_cover")
    town: str = Field(default="", description="Town segment of the MQTT topic")
    value: float | None = Field(
        default=None, description="The measurement, in unit; none in a state-only message"
    )
    unit: str = Field(default="", description="Unit of value, e.g. m")
    state: str | None = Field(
        default=None, description="Reported state, e.g. alarm, normal, open, closed, tamper"
    )
    battery_pct: float | None = Field(default=None, ge=0, le=100, description="Battery level")
    seq: int | None = Field(default=None, ge=0, description="The device's message counter")
    device_time: AwareDatetime | None = Field(
        default=None, description="Time stamped by the device, if it sent one"
    )
    received_at: AwareDatetime = Field(description="Time the edge box received it")


class SourceKind(StrEnum):
    CAMERA = "camera"
    SENSOR = "sensor"


class AlertPhase(StrEnum):
    RAISED = "raised"  # the condition holds
    CLEARED = "cleared"  # it ended: a device back online, a level back to normal


class Alert(Record):
    """A rule fired: the condition it watches held at ``observed_at``.

    While a condition persists the edge raises it again every
    ``repeat_every`` seconds of the rule; the case pipeline folds these into
    one case. ``alert_id`` is derived from source, rule, place and time, so
    a re-sent alert keeps its id.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    alert_id: str
    category: Slug = Field(description="What kind of problem, e.g. illegal_parking")
    place: Place
    source_kind: SourceKind
    source_id: Slug = Field(description="Camera id or device id")
    rule_id: Slug = Field(description="The configured rule that fired")
    rule_text: str = Field(description="The rule in words, for the reviewer")
    first_seen: AwareDatetime = Field(description="When the condition began")
    observed_at: AwareDatetime = Field(description="When this alert observed it")
    confidence: float = Field(ge=0, le=1)
    phase: AlertPhase = Field(
        default=AlertPhase.RAISED, description="raised, or cleared when the condition ended"
    )
    evidence: tuple[Evidence, ...] = ()
    detections: tuple[DetectionRecord, ...] = ()
    readings: tuple[SensorReading, ...] = ()

    @staticmethod
    def make_id(source_id: str, rule_id: str, place_id: str, observed_at: datetime) -> str:
        return stable_id("alert", source_id, rule_id, place_id, observed_at.isoformat())


class DeadLetter(Record):
    """A message the edge could not use, kept with the reason (never dropped silently)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    letter_id: str
    box_id: Slug = Field(description="The edge box that received it")
    source: str = Field(description="Where it came from, e.g. mqtt")
    topic: str = Field(description="Topic it arrived on (first 256 characters)")
    reason: str = Field(description="Why it was rejected: a fixed word, e.g. not_json")
    detail: str = Field(description="What exactly was wrong, for a person")
    payload_size: int = Field(ge=0, description="Size of the whole payload in bytes")
    payload_b64: str = Field(description="The payload (its first 4096 bytes), base64")
    received_at: AwareDatetime

    @staticmethod
    def make_id(box_id: str, topic: str, payload: bytes, received_at: datetime) -> str:
        digest = hashlib.sha256(payload).hexdigest()[:16]
        return stable_id("dead", box_id, topic, digest, received_at.isoformat())


class CaseStatus(StrEnum):
    FILED = "filed"


class Case(Record):
    """The state of one case: one real problem at one place."""

    schema_version: Literal[1] = SCHEMA_VERSION
    case_id: str
    category: Slug
    place: Place
    status: CaseStatus = CaseStatus.FILED
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    alert_count: int = Field(ge=1, description="Distinct alerts folded into this case")
    confidence: float = Field(ge=0, le=1)
    rule_texts: tuple[str, ...] = Field(description="Rules that fired, in first-fired order")
    sources: dict[str, AwareDatetime] = Field(
        description="Each source (kind:id) with the observed_at of its latest alert"
    )
    evidence: tuple[Evidence, ...] = Field(
        description="The first evidence and the most recent, bounded"
    )
    readings: tuple[SensorReading, ...] = Field(
        default=(), description="Sensor readings that fired, most recent, bounded"
    )
    cleared_at: AwareDatetime | None = Field(
        default=None,
        description="When a source last reported the condition over (a device back "
        "online, a level back to normal); none while it holds",
    )
    version: int = Field(ge=1, description="Grows by one with every case event")

    @staticmethod
    def make_id(category: str, place_id: str, opening_alert_id: str) -> str:
        return stable_id("case", category, place_id, opening_alert_id)


class CaseEventType(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"


class CaseEvent(Record):
    """One change to a case, as published on the dispatch topic."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="case_id and version: unique per change")
    type: CaseEventType
    case_id: str
    version: int = Field(ge=1)
    alert_id: str = Field(description="The alert that caused this change")
    emitted_at: AwareDatetime
    case: Case


WIRE_RECORDS: dict[str, type[Record]] = {
    "sensor_reading": SensorReading,
    "alert": Alert,
    "case": Case,
    "case_event": CaseEvent,
    "dead_letter": DeadLetter,
}
