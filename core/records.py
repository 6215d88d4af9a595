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
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Literal[1] = 1
#: Records that carry evidence (Alert, Case, CaseEvent) are at version 3. Version 2:
#: evidence gained ``size`` and ``url``, and ``path`` became an edge-only detail.
#: Version 3: the ``frame`` evidence kind (what the detector saw, undrawn), the case's
#: ``status_by``, ``reason`` and ``detections``, and the ``noted`` case event. Records
#: of versions 1 and 2 are still read.
EVIDENCE_SCHEMA_VERSION: Literal[3] = 3
WithEvidenceVersion = Literal[1, 2, 3]

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
    FRAME = "frame"  # the analysed frame without drawing: what the detector saw (version 3)


class Evidence(Record):
    """One piece of evidence: a file (snapshot, clip, chart) with its digest.

    A consumer fetches it at ``url`` and checks it against ``sha256`` and
    ``size``; ``path`` is where the edge box that recorded it keeps it.
    """

    kind: EvidenceKind
    path: str = Field(
        default="",
        description="Where the edge box that recorded it keeps the file (edge-only; empty "
        "on the dispatch stream when the file can be fetched at url)",
    )
    sha256: Sha256Hex
    media_type: str = Field(description="MIME type, e.g. image/jpeg")
    captured_at: AwareDatetime
    size: int | None = Field(default=None, ge=0, description="Bytes (version 2)")
    url: str | None = Field(
        default=None,
        description="Where the file can be fetched: an expiring link to the centre's "
        "evidence service, set on the dispatch stream (version 2)",
    )


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
    BOX = "box"  # the edge box about itself (version 2): its disk, its health


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

    schema_version: WithEvidenceVersion = EVIDENCE_SCHEMA_VERSION
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
    """Where a case is in the closed loop (闭环), from filed to closed."""

    FILED = "filed"  # 立案
    DISPATCHED = "dispatched"  # 派单
    ON_SITE = "on_site"  # 到场
    HANDLED = "handled"  # 处置 (first feedback given)
    VERIFIED = "verified"  # 核查
    CLOSED = "closed"  # 结案
    REJECTED = "rejected"  # false alarm (误报)
    MERGED = "merged"  # folded into another case
    SELF_HANDLED = "self_handled"  # 自发自处

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {CaseStatus.CLOSED, CaseStatus.REJECTED, CaseStatus.MERGED, CaseStatus.SELF_HANDLED}
)


class SlaStage(StrEnum):
    """The three time limits of the "三个一" rule."""

    DISPATCH = "dispatch"  # dispatched within 10 minutes
    ON_SITE = "on_site"  # someone on site within 1 hour
    FEEDBACK = "feedback"  # first feedback within 1 working day


class SlaLevel(StrEnum):
    """分色预警: green on time, yellow running late, red overdue."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class StageClock(Record):
    """One stage's deadline and how it went."""

    stage: SlaStage
    started_at: AwareDatetime
    yellow_at: AwareDatetime = Field(description="When a yellow warning is due")
    due_at: AwareDatetime = Field(description="The deadline; red after it")
    met_at: AwareDatetime | None = Field(default=None, description="When the stage was reached")
    level: SlaLevel = Field(default=SlaLevel.GREEN, description="Highest warning emitted")

    def next_warning_at(self) -> datetime | None:
        """When this clock next needs a warning, or None if it never will."""
        if self.met_at is not None or self.level is SlaLevel.RED:
            return None
        return self.yellow_at if self.level is SlaLevel.GREEN else self.due_at


class Route(Record):
    """Who owns a case (谁主管、谁牵头、谁办理) and how urgent it is."""

    owner: str = Field(description="The owning department, e.g. 城管中队")
    assisting: tuple[str, ...] = Field(default=(), description="Assisting departments")
    urgency: int = Field(ge=1, le=4, description="1 most urgent (特急) .. 4 routine")
    matched: str = Field(description="The responsibility-list entry that chose this route")


class Case(Record):
    """The state of one case: one real problem at one place."""

    schema_version: WithEvidenceVersion = EVIDENCE_SCHEMA_VERSION
    case_id: str
    category: Slug
    site_id: Slug = Field(
        description="The dedup place: a place group, or places within the merge distance"
    )
    place: Place = Field(description="The place of the alert that opened the case")
    place_ids: tuple[str, ...] = Field(default=(), description="Every place that reported it")
    status: CaseStatus = CaseStatus.FILED
    filed_at: AwareDatetime = Field(description="When the case was filed (or last reopened)")
    status_at: AwareDatetime = Field(description="When the status last changed")
    closed_at: AwareDatetime | None = Field(
        default=None, description="When it reached a terminal status; none while open"
    )
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    alert_count: int = Field(ge=1, description="Distinct alerts folded into this case")
    confidence: float = Field(
        ge=0, le=1, description="Combined: best per source kind, video and sensor corroborate"
    )
    source_confidence: dict[str, float] = Field(
        default_factory=dict, description="Best confidence per source (kind:id)"
    )
    corroborated: bool = Field(default=False, description="Both video and sensors reported it")
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
    route: Route | None = Field(default=None, description="Owning department and urgency")
    sla: tuple[StageClock, ...] = Field(default=(), description="Deadlines per stage")
    reopen_count: int = Field(default=0, ge=0, description="Times reopened after closing")
    recurrence: int = Field(
        default=1, ge=1, description="This is the n-th case of its category at its site"
    )
    linked_case_ids: tuple[str, ...] = Field(
        default=(), description="Earlier cases of this category at this site, newest first"
    )
    previous_closed_at: AwareDatetime | None = Field(
        default=None,
        description="When the previous case here ended: alerts observed until then belong "
        "to the earlier cases, and arriving late or again they change nothing",
    )
    merged_into: str | None = Field(default=None, description="Set when status is merged")
    last_note: str = Field(default="", description="Note of the latest status update")
    status_by: str = Field(
        default="", description="Who made the latest status update or note (version 3)"
    )
    reason: Slug | None = Field(
        default=None, description="Why it was rejected, e.g. wrong_object (version 3)"
    )
    detections: tuple[DetectionRecord, ...] = Field(
        default=(),
        description="The objects of the latest camera alert, in the pixels of its frame "
        "evidence (version 3)",
    )
    version: int = Field(
        ge=1,
        description="Grows by one with every change; the stream may skip versions that were "
        "held and published together ([dedup] coalesce_s)",
    )

    @property
    def case_key(self) -> str:
        return f"{self.category}|{self.site_id}"

    def next_sla_at(self) -> datetime | None:
        """The earliest pending SLA warning, or None (terminal cases have none)."""
        if self.status.terminal:
            return None
        times = [t for c in self.sla if (t := c.next_warning_at()) is not None]
        return min(times, default=None)

    @staticmethod
    def make_id(category: str, place_id: str, opening_alert_id: str) -> str:
        return stable_id("case", category, place_id, opening_alert_id)


class CaseEventType(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    REOPENED = "reopened"
    STATUS_CHANGED = "status_changed"
    NOTED = "noted"  # a note added, the status unchanged (version 3)
    SLA_YELLOW = "sla_yellow"
    SLA_RED = "sla_red"


class CaseEvent(Record):
    """One change to a case, as published on the dispatch topic (inside a CloudEvent)."""

    schema_version: WithEvidenceVersion = EVIDENCE_SCHEMA_VERSION
    event_id: str = Field(description="case_id and version: unique per change")
    type: CaseEventType
    case_id: str
    version: int = Field(ge=1)
    cause_id: str = Field(
        description="What caused it: an alert id, a status update id, or sla:<stage>:<level>"
    )
    stage: SlaStage | None = Field(default=None, description="The SLA stage, for SLA events")
    emitted_at: AwareDatetime
    case: Case

    @staticmethod
    def make_id(case_id: str, version: int) -> str:
        return f"{case_id}:v{version}"

    @classmethod
    def of_case(
        cls,
        case: Case,
        kind: CaseEventType,
        cause: str,
        at: datetime,
        stage: SlaStage | None = None,
    ) -> CaseEvent:
        """The event that leaves ``case`` at its version."""
        return cls(
            event_id=cls.make_id(case.case_id, case.version),
            type=kind,
            case_id=case.case_id,
            version=case.version,
            cause_id=cause,
            stage=stage,
            emitted_at=at,
            case=case,
        )


class StatusUpdate(Record):
    """A status change from the dispatch system (or the review workbench).

    Version 2 adds ``reason`` (why a case was rejected) and the note-only
    update: ``status`` none adds ``note`` to the case without moving it.
    """

    schema_version: Literal[1, 2] = 2
    update_id: str = Field(description="Unique per update: a re-delivery changes nothing")
    case_id: str
    status: CaseStatus | None = Field(description="The new status; none for a note only (v2)")
    at: AwareDatetime = Field(description="When it happened")
    by: str = Field(default="", description="Department or person")
    note: str = Field(default="", description="Free text, e.g. the handling result")
    merged_into: str | None = Field(default=None, description="Target case, for merged")
    reason: Slug | None = Field(
        default=None, description="Why, as a fixed word: e.g. wrong_object for a rejection (v2)"
    )


HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d")


class SuppressionKind(StrEnum):
    """What a reviewer told an edge camera to stop reporting."""

    MASK = "mask"  # objects whose foot point lies in a polygon drawn on the snapshot
    MUTE_CLASS = "mute_class"  # some classes in the zones of one place
    TIME_WINDOW = "time_window"  # everything in the zones of one place, during some hours


class Suppression(Record):
    """One suppression made from a rejected case; it ends at ``expires_at``.

    It applies to the zones of ``camera_id`` that cover ``place_id``. ``polygon``
    is in fractions of the frame's width and height (0..1), so it fits any
    resolution of the camera's stream; ``labels`` empty means every class;
    ``hours`` empty means all day (otherwise ``HH:MM-HH:MM`` in the camera's
    time zone).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    suppression_id: str
    kind: SuppressionKind
    camera_id: Slug
    place_id: Slug
    labels: tuple[str, ...] = ()
    polygon: tuple[tuple[float, float], ...] = ()
    hours: tuple[str, ...] = ()
    case_id: str = Field(description="The rejected case it was made from")
    reason: Slug = Field(description="The rejection's reason")
    created_by: str
    created_at: AwareDatetime
    expires_at: AwareDatetime

    @model_validator(mode="after")
    def _shape(self) -> Suppression:
        for x, y in self.polygon:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError("polygon points are fractions of the frame (0..1)")
        if self.kind is SuppressionKind.MASK and len(self.polygon) < 3:
            raise ValueError("a mask needs a polygon of 3 or more points")
        if self.kind is SuppressionKind.MUTE_CLASS and not self.labels:
            raise ValueError("muting needs at least one class")
        if self.kind is SuppressionKind.TIME_WINDOW and not self.hours:
            raise ValueError("a time window needs hours")
        for span in self.hours:
            if not HOURS.fullmatch(span):
                raise ValueError(f"'{span}' is not HH:MM-HH:MM")
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")
        return self

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


class CameraSuppressions(Record):
    """The suppression topic's message: every live suppression of one camera.

    Keyed by ``camera_id`` on a compacted topic, so the latest message per
    camera is the whole truth; an edge box replaces what it held for that
    camera, and ignores a message older than the one it has (``revision``).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    camera_id: Slug
    revision: int = Field(ge=1, description="Grows with every change for this camera")
    published_at: AwareDatetime
    suppressions: tuple[Suppression, ...] = ()


WIRE_RECORDS: dict[str, type[Record]] = {
    "sensor_reading": SensorReading,
    "alert": Alert,
    "case": Case,
    "case_event": CaseEvent,
    "status_update": StatusUpdate,
    "camera_suppressions": CameraSuppressions,
    "dead_letter": DeadLetter,
}
