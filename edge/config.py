"""Configuration of the edge box: cameras, sensors, the detector and its uplink.

The edge service validates these sections (:data:`EDGE_SECTIONS`) and
nothing else; one file may also hold the dispatch service's sections, which
the app shell checks (``streetwatch.config``). :func:`parse_edge_config`
turns every problem into one :class:`ConfigError` whose lines each name the
field path, e.g. ``cameras[0].rules[0].zone: no zone 'bay' on camera 'cam-1'``.

Validators are pure: no network or environment access. Whether a video path
or model file exists is checked when the component that uses it starts; the
device list file (``[neuron] devices_file``) is read at load, so that every
device is checked with the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from core.config import (
    BaseUrl,
    ConfigError,
    PlaceConfig,
    Point,
    Problem,
    Section,
    duplicate_places,
    validate_sections,
)
from core.kafka import KafkaConfig
from core.observability import ListenAddress
from core.records import Place, Slug
from core.sites import DedupConfig, PlaceGroupConfig, SiteMap
from core.timefmt import known_zone
from detectors.base import DETECTORS
from detectors.nanodet import NanoDetConfig
from detectors.registry import DetectorConfig
from edge.camera_health import CameraHealthConfig
from edge.privacy import PrivacyConfig
from edge.rules.base import CAMERA_RULES
from edge.rules.registry import RuleConfig
from edge.sensor_rules.base import SENSOR_RULES
from edge.sensor_rules.config import DeviceTypeConfig, SensorRegistry, default_device_types
from edge.tracker import TrackerConfig
from ingest.device_config import DeviceConfig
from ingest.device_registry import load_devices
from ingest.mqtt_config import MqttConfig
from ingest.reading_checks import ReadingChecksConfig
from ingest.topic_layout import DEFAULT_TOPIC_TEMPLATE, TopicLayout

#: the ``type`` values of the plugin unions (pydantic puts them in error paths)
PLUGIN_TAGS = DETECTORS.tags | CAMERA_RULES.tags | SENSOR_RULES.tags


class ZoneConfig(Section):
    """A polygon in a camera's pixel coordinates, tied to a place."""

    zone_id: Slug
    place: Slug = Field(description="place_id of the place this zone covers")
    polygon: list[Point] = Field(min_length=3, description="Vertices [x, y] in pixels")


class MotionConfig(Section):
    """Motion gating: run the detector only when something moved (see edge/motion.py)."""

    enabled: bool = Field(default=True, description="Gate the detector on motion")
    width: int = Field(default=160, ge=32, le=1920, description="Width of the motion image")
    threshold: int = Field(default=25, ge=1, le=255, description="Pixel change that is motion")
    min_area: float = Field(
        default=0.0005,
        ge=0,
        le=1,
        description="Share of the watched area (zones less masks) that must change",
    )
    full_check_every_s: float = Field(
        default=10.0, gt=0, description="Run the detector at least this often, moving or not"
    )
    regions: bool = Field(
        default=False,
        description="Run the detector on a crop around confined motion (finds small, far "
        "objects better; costs more runs)",
    )


class ClipConfig(Section):
    """Evidence clips: the seconds before and after a rule first fires, as H.264 MP4."""

    enabled: bool = Field(default=True, description="Record a clip when an episode starts")
    pre_s: float = Field(default=5.0, ge=0, le=60, description="Seconds before the firing")
    post_s: float = Field(default=5.0, ge=0, le=60, description="Seconds after the firing")
    budget_mb: float = Field(
        default=8.0, gt=0, le=512, description="Memory for the pre-event buffer, per camera"
    )


class StreamConfig(Section):
    """Timeouts of live (RTSP/HTTP) sources."""

    open_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Give up opening after")
    read_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="A read blocking this long is a stalled stream"
    )
    retry_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay")

    @model_validator(mode="after")
    def _ordered(self) -> StreamConfig:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


class CameraConfig(Section):
    """A camera, its zones, masks and rules."""

    camera_id: Slug
    url: str = Field(description="Video source: a file path, rtsp:// or http(s):// URL")
    evidence_url: str | None = Field(
        default=None,
        description=(
            "Main stream for evidence (same forms as url): snapshots and clips use its "
            "full-resolution, full-rate frames while url (then the low-resolution "
            "sub-stream) is analysed; zones stay in url's pixels"
        ),
    )
    analysis_fps: float = Field(default=2.0, gt=0, le=30, description="Frames analysed per second")
    loop: bool = Field(default=False, description="Restart a file source when it ends")
    timezone: str = Field(
        default="Asia/Shanghai", description="Time zone of the rules' active_hours"
    )
    motion: MotionConfig = Field(default_factory=MotionConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    place: Slug | None = Field(
        default=None,
        description="place_id of the place the camera watches, for its health cases; "
        "default: its first zone's place",
    )
    health: CameraHealthConfig = Field(default_factory=CameraHealthConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ignore_masks: list[Annotated[list[Point], Field(min_length=3)]] = Field(
        default_factory=list,
        description="Polygons [[x, y], ...] whose detections are ignored (by bottom centre)",
    )
    zones: list[ZoneConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_zone(v)


class NeuronConfig(Section):
    """Neuron (IoT) sensors: topic layout, device list file and reading checks."""

    topic: str = Field(
        default=DEFAULT_TOPIC_TEMPLATE,
        description="Topic layout with {town}, {type} and {device_id}, one per level",
    )
    devices_file: str | None = Field(
        default=None,
        description="CSV or YAML device list (docs/examples/devices.csv), relative to the "
        "config file; added to [[devices]]",
    )
    checks: ReadingChecksConfig = Field(default_factory=ReadingChecksConfig)
    separate_processes: bool = Field(
        default=True,
        description="MQTT intake and the sensor rules each in a child process, on their "
        "own cores and away from the cameras (edge/sensor_process.py); false: in the "
        "edge worker's process",
    )

    @field_validator("topic")
    @classmethod
    def _layout(cls, v: str) -> str:
        try:
            TopicLayout(v)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return v


class EdgeConfig(Section):
    """This edge box."""

    box_id: Slug = Field(default="edge-1", description="Names the box (MQTT client id)")
    evidence_dir: str = Field(
        default="var/evidence", description="Where snapshots are written, one folder per camera"
    )
    outbox: str = Field(
        default="",
        description="SQLite file holding alerts, dead letters and evidence uploads until "
        "they are delivered (edge/outbox.py); empty: outbox.db in evidence_dir",
    )
    min_free_mb: float = Field(
        default=256.0,
        ge=0,
        description="Free space kept on the evidence disk: below it, evidence already "
        "uploaded is deleted oldest first; if that is not enough, a health alert "
        "edge_disk_low is raised (alerts are never deleted)",
    )
    disk_check_s: float = Field(
        default=10.0, gt=0, le=3600, description="How often the free space is looked at"
    )
    originals_keep_h: float = Field(
        default=24.0,
        ge=0,
        le=24 * 365,
        description="Hours the unblurred originals of a privacy camera's evidence "
        "([cameras.privacy]) stay on the box, under <camera>/originals/, never uploaded; "
        "0: none are kept",
    )
    evidence_url: BaseUrl = Field(
        default="",
        description="Base URL of the centre's evidence service (streetwatch evidence serve); "
        "empty: evidence stays on the box",
    )
    evidence_token_file: str = Field(
        default="",
        description="File holding this box's upload token (streetwatch evidence token); "
        "needed with evidence_url",
    )
    http: ListenAddress = Field(
        default="127.0.0.1:9108",
        description="host:port of the worker's /metrics (Prometheus), /healthz and /readyz "
        '(README, "Operating a box"); empty or port 0: not served',
    )
    inference_slots: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Detector runs at once across all cameras (the rest wait their turn, so "
        "decoding always finds a core); 0: the box's cores divided by [detector] threads",
    )
    evidence_workers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Evidence jobs at once across all cameras: clip encodes (an x264 encoder "
        "holds about 40 MB at 768x576) and face blurring; the rest wait their turn",
    )
    camera_stuck_s: float = Field(
        default=60.0,
        gt=0,
        description="A camera thread that makes no progress this long is logged as stuck",
    )
    camera_restart_max_s: float = Field(
        default=300.0,
        ge=1,
        description="Longest wait before restarting a camera whose thread failed (it backs "
        "off from 5 s)",
    )

    @model_validator(mode="after")
    def _token_with_url(self) -> EdgeConfig:
        if self.evidence_url and not self.evidence_token_file:
            raise ValueError("evidence_url needs evidence_token_file")
        return self


class EdgeServiceConfig(Section):
    """Everything the edge box (``streetwatch edge``) reads from a config file."""

    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    detector: DetectorConfig = Field(default_factory=NanoDetConfig)
    places: list[PlaceConfig] = Field(default_factory=list)
    place_groups: list[PlaceGroupConfig] = Field(default_factory=list)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    cameras: list[CameraConfig] = Field(default_factory=list)
    neuron: NeuronConfig = Field(default_factory=NeuronConfig)
    device_types: list[DeviceTypeConfig] = Field(
        default_factory=list,
        description="Device types, added to the built-in ones or replacing one by name",
    )
    devices: list[DeviceConfig] = Field(default_factory=list)

    def outbox_path(self) -> Path:
        """Where the edge outbox lives."""
        if self.edge.outbox:
            return Path(self.edge.outbox)
        return Path(self.edge.evidence_dir) / "outbox.db"

    def place(self, place_id: str) -> Place:
        for p in self.places:
            if p.place_id == place_id:
                return p.to_place()
        raise KeyError(place_id)

    def device_types_by_name(self) -> dict[str, DeviceTypeConfig]:
        """The built-in device types, with ``[[device_types]]`` added or replacing by name."""
        types = default_device_types()
        types.update({t.name: t for t in self.device_types})
        return types

    def device_registry(self, source: str = "<config>") -> SensorRegistry:
        """Every device (``[[devices]]`` and the devices file) resolved to its place and rules."""
        devices = list(self.devices)
        if self.neuron.devices_file:
            devices += load_devices(Path(self.neuron.devices_file))
        return SensorRegistry(
            self.device_types_by_name(),
            devices,
            [p.to_place() for p in self.places],
            source=source,
        )

    def site_map(self) -> SiteMap:
        """The sites alerts are keyed by: ``[[places]]`` and the devices' places."""
        places = {p.place_id: p.to_place() for p in self.places}
        for device in self.device_registry():
            places.setdefault(device.place.place_id, device.place)
        return SiteMap(list(places.values()), self.place_groups, self.dedup.merge_within_m)


EDGE_SECTIONS: frozenset[str] = frozenset(EdgeServiceConfig.model_fields)


def edge_problems(cfg: EdgeServiceConfig) -> Iterator[Problem]:
    """References that do not resolve: a zone's place, a rule's zone; duplicate ids."""
    yield from duplicate_places(cfg.places)
    places = {p.place_id for p in cfg.places}
    seen_cams: set[str] = set()
    for c, cam in enumerate(cfg.cameras):
        if cam.camera_id in seen_cams:
            yield f"cameras[{c}].camera_id", f"duplicate camera_id '{cam.camera_id}'"
        seen_cams.add(cam.camera_id)
        if cam.place is not None and cam.place not in places:
            yield f"cameras[{c}].place", f"no place '{cam.place}' in [[places]]"
        zones = {z.zone_id for z in cam.zones}
        for z, zone in enumerate(cam.zones):
            if zone.place not in places:
                yield f"cameras[{c}].zones[{z}].place", f"no place '{zone.place}' in [[places]]"
        for r, rule in enumerate(cam.rules):
            if rule.zone not in zones:
                known = ", ".join(sorted(zones)) or "none"
                yield (
                    f"cameras[{c}].rules[{r}].zone",
                    f"no zone '{rule.zone}' on camera '{cam.camera_id}' (zones: {known})",
                )


def check_edge(cfg: EdgeServiceConfig, source: str) -> None:
    """Raise :class:`ConfigError` for dangling references, then for any device problem
    (naming the device, file and line)."""
    problems = list(edge_problems(cfg))
    if problems:
        raise ConfigError(source, problems)
    cfg.device_registry(source)


def parse_edge_config(data: object, source: str = "<config>") -> EdgeServiceConfig:
    """The edge's sections validated from already-parsed TOML data; raise :class:`ConfigError`."""
    cfg = validate_sections(EdgeServiceConfig, data, source, PLUGIN_TAGS)
    check_edge(cfg, source)
    return cfg


def resolve_paths(data: dict[str, object], folder: Path) -> dict[str, object]:
    """Resolve ``[neuron] devices_file`` against the config file's folder."""
    neuron = data.get("neuron")
    if isinstance(neuron, dict) and isinstance(neuron.get("devices_file"), str):
        resolved = folder / neuron["devices_file"]
        data = {**data, "neuron": {**neuron, "devices_file": str(resolved)}}
    return data
