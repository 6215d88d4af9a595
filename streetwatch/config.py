"""Configuration of an edge box and its dispatch worker, read from TOML.

Strict: unknown keys are errors, types are not coerced (``"5"`` is not 5),
and references between sections (a rule's zone, a zone's place) must
resolve. :func:`load_config` turns every problem into one
:class:`ConfigError` whose lines each name the field path, e.g.
``cameras[0].rules[0].zone: no zone 'bay' on camera 'cam-1'``.

Validators here are pure: no file, network or environment access. Whether
a video path or model file exists is checked when the component that uses
it starts.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors.nanodet import NanoDetConfig
from detectors.registry import DetectorConfig
from edge.rules.registry import RULE_TYPES, RuleConfig
from edge.sensor_rules.config import (
    SENSOR_RULE_TYPES,
    DeviceConfig,
    DeviceTypeConfig,
    default_device_types,
)
from edge.tracker import TrackerConfig
from ingest.device_registry import DeviceRegistry, load_devices
from ingest.mqtt_config import MqttConfig
from ingest.reading_checks import ReadingChecksConfig
from ingest.topic_layout import DEFAULT_TOPIC_TEMPLATE, TopicLayout
from streetwatch.config_base import ConfigError as ConfigError
from streetwatch.config_base import Point, Problem, Section
from streetwatch.config_cases import (
    DedupConfig,
    Open311Config,
    PlaceGroupConfig,
    RoutingConfig,
    SlaConfig,
    StoreConfig,
)
from streetwatch.records import GridRef, Place, Slug


class PlaceConfig(Section):
    """A named place; zones and sensors point at one by ``place_id``."""

    place_id: Slug
    name: str = Field(default="", description="Address or landmark, shown to reviewers")
    lat: float | None = Field(default=None, ge=-90, le=90, description="WGS84 latitude")
    lon: float | None = Field(default=None, ge=-180, le=180, description="WGS84 longitude")
    grids: dict[Literal["large", "medium", "small", "micro"], str] = Field(
        default_factory=dict, description="Grid id per level (大/中/小/微)"
    )

    def to_place(self) -> Place:
        return Place(
            place_id=self.place_id,
            name=self.name,
            lat=self.lat,
            lon=self.lon,
            grids=GridRef(**self.grids),
        )


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
    ignore_masks: list[Annotated[list[Point], Field(min_length=3)]] = Field(
        default_factory=list,
        description="Polygons [[x, y], ...] whose detections are ignored (by bottom centre)",
    )
    zones: list[ZoneConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{v}'") from None
        return v


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


class KafkaConfig(Section):
    """The Kafka-API broker that carries alerts and case events."""

    bootstrap: str = Field(default="127.0.0.1:9092", description="host:port of a broker")
    alerts_topic: str = Field(
        default="streetwatch.alerts", description="Edge -> dispatch worker, keyed by place"
    )
    dispatch_topic: str = Field(
        default="streetwatch.dispatch",
        description="Case events for the dispatch system, keyed by case id",
    )
    dead_letter_topic: str = Field(
        default="streetwatch.alerts.dead", description="Alerts the dispatch worker cannot read"
    )
    status_topic: str = Field(
        default="streetwatch.case-status",
        description="Status updates from the dispatch system (StatusUpdate JSON)",
    )
    sensor_dead_letter_topic: str = Field(
        default="streetwatch.sensors.dead",
        description="Sensor messages the edge cannot use, with the reason, keyed by reason",
    )
    partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the topics streetwatch creates"
    )


class DispatchConfig(Section):
    """The dispatch worker (a faust app) that folds alerts into cases."""

    app_id: Slug = Field(
        default="streetwatch-dispatch",
        description="Also the consumer groups: `<app_id>` (status updates), `<app_id>-alerts`",
    )
    datadir: str = Field(default="var/dispatch", description="faust's working folder")
    session_timeout_s: float = Field(default=10.0, ge=2, le=300)


class EdgeConfig(Section):
    """This edge box."""

    box_id: Slug = Field(default="edge-1", description="Names the box (MQTT client id)")
    evidence_dir: str = Field(
        default="var/evidence", description="Where snapshots are written, one folder per camera"
    )


class Config(Section):
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    detector: DetectorConfig = Field(default_factory=NanoDetConfig)
    places: list[PlaceConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)
    neuron: NeuronConfig = Field(default_factory=NeuronConfig)
    device_types: list[DeviceTypeConfig] = Field(
        default_factory=list,
        description="Device types, added to the built-in ones or replacing one by name",
    )
    devices: list[DeviceConfig] = Field(default_factory=list)
    store: StoreConfig = Field(default_factory=StoreConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    place_groups: list[PlaceGroupConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    open311: Open311Config = Field(default_factory=Open311Config)

    def place(self, place_id: str) -> Place:
        for p in self.places:
            if p.place_id == place_id:
                return p.to_place()
        raise KeyError(place_id)


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _dangling_references(cfg: Config) -> Iterator[Problem]:
    places = {p.place_id for p in cfg.places}
    seen_places: set[str] = set()
    for i, p in enumerate(cfg.places):
        if p.place_id in seen_places:
            yield f"places[{i}].place_id", f"duplicate place_id '{p.place_id}'"
        seen_places.add(p.place_id)
    seen_cams: set[str] = set()
    for c, cam in enumerate(cfg.cameras):
        if cam.camera_id in seen_cams:
            yield f"cameras[{c}].camera_id", f"duplicate camera_id '{cam.camera_id}'"
        seen_cams.add(cam.camera_id)
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


_TAGS = RULE_TYPES | SENSOR_RULE_TYPES | {"nanodet", "yolo-onnx", "ultralytics"}


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-parsed TOML data; raise :class:`ConfigError`."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # pydantic puts a tagged union's tag into the path; the file has no such key
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p in _TAGS)]
            where = _path(loc)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif "input" in err and err["type"].endswith("_type"):
                msg = f"{msg} (got {type(err['input']).__name__} {err['input']!r})"
            problems.append((where, msg))
        raise ConfigError(source, problems) from None
    problems = list(_dangling_references(cfg))
    if problems:
        raise ConfigError(source, problems)
    device_registry(cfg, source)  # raises ConfigError naming the device, file and line
    return cfg


def device_types(cfg: Config) -> dict[str, DeviceTypeConfig]:
    """The built-in device types, with ``[[device_types]]`` added or replacing by name."""
    types = default_device_types()
    types.update({t.name: t for t in cfg.device_types})
    return types


def device_registry(cfg: Config, source: str = "<config>") -> DeviceRegistry:
    """Every device (``[[devices]]`` and the devices file) resolved to its place and rules."""
    devices = list(cfg.devices)
    if cfg.neuron.devices_file:
        devices += load_devices(Path(cfg.neuron.devices_file))
    return DeviceRegistry(
        device_types(cfg), devices, [p.to_place() for p in cfg.places], source=source
    )


def load_config(path: Path) -> Config:
    """Read and validate a TOML (or, by suffix, JSON) config file; raise :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read file: {exc.strerror}")]) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(str(path), [("", f"not valid JSON: {exc}")]) from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), [("", f"not valid TOML: {exc}")]) from None
    return parse_config(_relative_to(data, path.parent), str(path))


def _relative_to(data: object, folder: Path) -> object:
    """Resolve ``[neuron] devices_file`` against the config file's folder."""
    if isinstance(data, dict):
        neuron = data.get("neuron")
        if isinstance(neuron, dict) and isinstance(neuron.get("devices_file"), str):
            resolved = folder / neuron["devices_file"]
            data = {**data, "neuron": {**neuron, "devices_file": str(resolved)}}
    return data
