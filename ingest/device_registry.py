"""The device registry: devices read from CSV or YAML, resolved to places and rules.

CSV (one device per row, header required; blank cells are "not given"; a
row whose first cell starts with ``#`` is a comment)::

    device_id,type,town,place_id,name,lat,lon,grid_large,grid_medium,grid_small,grid_micro,overrides
    wl-1,water_level,town-1,bridge-3,,,,,,,,level.enter=0.8;level.exit=0.6
    wl-2,water_level,town-1,,Underpass at Lake Rd,30.27,120.15,town-1,d-2,n-7,m-33,

YAML: a list of mappings with the same keys (or a mapping whose ``devices``
key holds that list); ``overrides`` may also be a mapping. Every value is
read as text, exactly as in the CSV, so ``0012`` stays ``0012``.

Problems name the file, the line and the field, and are all reported
together in one :class:`~core.config.ConfigError`.

:class:`DeviceRegistry` resolves each device to its :class:`Place` (a
``[[places]]`` entry or the inline place), its device type and its rules
(its type's rules with the device's overrides applied). It is generic over
the device type (:class:`DeviceKind`): which rules a type has is the edge's
business (``edge.sensor_rules.config.SensorRegistry``); this module knows
only that a type has a name, a payload style and rules with overrides.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from core.config import ConfigError, Problem
from core.records import GridRef, Place
from ingest.device_config import DeviceConfig
from ingest.sensor_payload import PayloadSpec

COLUMNS = (
    "device_id",
    "type",
    "town",
    "place_id",
    "name",
    "lat",
    "lon",
    "grid_large",
    "grid_medium",
    "grid_small",
    "grid_micro",
    "overrides",
)
REQUIRED = ("device_id", "type")
_NUMBERS = ("lat", "lon")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class DeviceKind(Protocol[R_co]):
    """What the registry needs of a device type: ``R_co`` is the type of its rules."""

    @property
    def name(self) -> str: ...

    @property
    def unit(self) -> str: ...

    def payload_spec(self) -> PayloadSpec: ...

    def resolve_rules(
        self, overrides: Mapping[str, float]
    ) -> tuple[Sequence[R_co], Sequence[Problem]]:
        """Its rules with a device's ``overrides`` applied, and a (key, message) per
        override that does not apply."""
        ...


T = TypeVar("T", bound=DeviceKind[Any])


def parse_overrides(text: str) -> dict[str, float]:
    """``"level.enter=0.8;level.exit=0.6"`` -> ``{"level.enter": 0.8, "level.exit": 0.6}``."""
    out: dict[str, float] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"'{part}' is not rule_id.field=number")
        if key in out:
            raise ValueError(f"'{key}' given twice")
        out[key] = _number(value.strip(), key)
    return out


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what}: not a number: {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{what}: not a finite number: {text!r}")
    return v


def _device(
    cells: Mapping[str, str], overrides: dict[str, float] | None, where: str
) -> tuple[DeviceConfig | None, list[Problem]]:
    """Build a device from text cells (blank = not given); ``where`` prefixes problems."""
    problems: list[Problem] = []
    data: dict[str, object] = {}
    grids: dict[str, str] = {}
    for key, raw in cells.items():
        text = raw.strip()
        if not text:
            continue
        if key in _NUMBERS:
            try:
                data[key] = _number(text, key)
            except ValueError as exc:
                problems.append((f"{where}, {key}", str(exc).partition(": ")[2]))
        elif key.startswith("grid_"):
            grids[key.removeprefix("grid_")] = text
        elif key == "overrides":
            try:
                data[key] = parse_overrides(text)
            except ValueError as exc:
                problems.append((f"{where}, overrides", str(exc)))
        else:
            data[key] = text
    if overrides is not None:
        data["overrides"] = overrides
    if grids:
        data["grids"] = grids
    for key in REQUIRED:
        if key not in data:
            problems.append((f"{where}, {key}", "missing"))
    if problems:
        return None, problems
    try:
        return DeviceConfig.model_validate(data), []
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = "grid_" + loc[1] if loc[0] == "grids" and len(loc) > 1 else ".".join(loc)
            problems.append((f"{where}, {field}", err["msg"]))
        return None, problems


def _check_unique(devices: list[tuple[str, DeviceConfig]]) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for where, d in devices:
        if d.device_id in seen:
            yield f"{where}, device_id", f"duplicate '{d.device_id}' (first at {seen[d.device_id]})"
        else:
            seen[d.device_id] = where


def _read_csv(path: Path, text: str) -> list[DeviceConfig]:
    problems: list[Problem] = []
    rows = csv.reader(text.splitlines())
    header: list[str] | None = None
    found: list[tuple[str, DeviceConfig]] = []
    for cells in rows:
        line = rows.line_num
        if not cells or not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            unknown = [c for c in header if c not in COLUMNS]
            if unknown:
                problems.append(
                    (f"line {line}", f"unknown columns {unknown} (known: {', '.join(COLUMNS)})")
                )
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                problems.append((f"line {line}", f"missing columns {missing}"))
            if len(set(header)) != len(header):
                problems.append((f"line {line}", "a column is named twice"))
            if problems:
                raise ConfigError(str(path), problems)
            continue
        where = f"line {line}"
        if len(cells) > len(header):
            problems.append((where, f"{len(cells)} cells but {len(header)} columns"))
            continue
        device, bad = _device(dict(zip(header, cells, strict=False)), None, where)
        problems.extend(bad)
        if device is not None:
            found.append((where, device))
    if header is None:
        raise ConfigError(str(path), [("", "no header row")])
    problems.extend(_check_unique(found))
    if problems:
        raise ConfigError(str(path), problems)
    return [d for _, d in found]


def _yaml() -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        return None


def _scalar(yaml: Any, node: Any, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError(f"{what}: must be a single value")
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value)


def _read_yaml(path: Path, text: str) -> list[DeviceConfig]:
    yaml = _yaml()
    if yaml is None:
        raise ConfigError(str(path), [("", "reading YAML needs PyYAML (pip install pyyaml)")])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [("", f"not valid YAML: {exc}")]) from None
    if isinstance(root, yaml.MappingNode):
        items = {_scalar(yaml, k, "key"): v for k, v in root.value}
        unknown = sorted(set(items) - {"devices"})
        if unknown or "devices" not in items:
            raise ConfigError(
                str(path), [("", f"expected a list of devices or devices: [...] (got {unknown})")]
            )
        root = items["devices"]
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        raise ConfigError(str(path), [("", "expected a list of devices")])
    problems: list[Problem] = []
    found: list[tuple[str, DeviceConfig]] = []
    for i, node in enumerate(root.value):
        where = f"line {node.start_mark.line + 1} (devices[{i}])"
        if not isinstance(node, yaml.MappingNode):
            problems.append((where, "a device must be a mapping"))
            continue
        cells: dict[str, str] = {}
        overrides: dict[str, float] | None = None
        bad: list[Problem] = []
        for k, v in node.value:
            key = "?"
            try:
                key = _scalar(yaml, k, "key")
                if key not in COLUMNS:
                    bad.append((f"{where}, {key}", "unknown key"))
                elif key in cells or (key == "overrides" and overrides is not None):
                    bad.append((f"{where}, {key}", "given twice"))
                elif key == "overrides" and isinstance(v, yaml.MappingNode):
                    overrides = {}
                    for ok, ov in v.value:
                        name = _scalar(yaml, ok, "overrides key")
                        overrides[name] = _number(_scalar(yaml, ov, name), name)
                else:
                    cells[key] = _scalar(yaml, v, key)
            except ValueError as exc:
                bad.append((f"{where}, {key}", str(exc)))
        if bad:
            problems.extend(bad)
            continue
        device, bad = _device(cells, overrides, where)
        problems.extend(bad)
        if device is not None:
            found.append((where, device))
    problems.extend(_check_unique(found))
    if problems:
        raise ConfigError(str(path), problems)
    return [d for _, d in found]


def load_devices(path: Path) -> list[DeviceConfig]:
    """Devices from a ``.csv`` or ``.yaml``/``.yml`` file; raise :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(str(path), [("", f"cannot read file: {why}")]) from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, text)
    if suffix in (".yaml", ".yml"):
        return _read_yaml(path, text)
    raise ConfigError(str(path), [("", "devices file must end in .csv, .yaml or .yml")])


@dataclass(frozen=True)
class ResolvedDevice(Generic[T, R]):
    """A device with its type, its place and its effective rules."""

    device: DeviceConfig
    type: T
    place: Place
    rules: tuple[R, ...]


class DeviceRegistry(Generic[T, R]):
    """Devices resolved against their types and the known places.

    ``types`` by name (e.g. the edge's built-in device types); ``places``:
    the ``[[places]]`` entries as :class:`Place` records. Every problem
    (unknown type, unknown or conflicting place, bad override, duplicate
    id) is reported in one :class:`ConfigError` naming ``source``.
    """

    def __init__(
        self,
        types: Mapping[str, T],
        devices: Iterable[DeviceConfig],
        places: Iterable[Place] = (),
        source: str = "<devices>",
    ) -> None:
        self.types = dict(types)
        known = {p.place_id: p for p in places}
        problems: list[Problem] = []
        self._devices: dict[str, ResolvedDevice[T, R]] = {}
        for i, d in enumerate(devices):
            where = f"devices[{i}] '{d.device_id}'"
            if d.device_id in self._devices:
                problems.append((f"{where}.device_id", "duplicate device_id"))
                continue
            dtype = self.types.get(d.type)
            if dtype is None:
                names = ", ".join(sorted(self.types)) or "none"
                problems.append((f"{where}.type", f"no device type '{d.type}' (types: {names})"))
                continue
            place, why = _place(d, known)
            if place is None:
                problems.append((f"{where}.place_id", why))
                continue
            rules, bad = dtype.resolve_rules(d.overrides)
            if bad:
                problems.extend((f"{where}.overrides.{key}", msg) for key, msg in bad)
                continue
            self._devices[d.device_id] = ResolvedDevice(d, dtype, place, tuple(rules))
        if problems:
            raise ConfigError(source, problems)

    def get(self, device_id: str) -> ResolvedDevice[T, R] | None:
        return self._devices.get(device_id)

    def __getitem__(self, device_id: str) -> ResolvedDevice[T, R]:
        return self._devices[device_id]

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __iter__(self) -> Iterator[ResolvedDevice[T, R]]:
        return iter(self._devices.values())

    def __len__(self) -> int:
        return len(self._devices)


def _place(d: DeviceConfig, known: Mapping[str, Place]) -> tuple[Place | None, str]:
    inline = d.has_inline_place
    if d.place_id is not None and d.place_id in known:
        if inline:
            return None, (
                f"'{d.place_id}' is a [[places]] entry; give either it or an inline "
                "place (name/lat/lon/grids), not both"
            )
        return known[d.place_id], ""
    if not inline:
        if d.place_id is None:
            return None, "no place: give place_id of a [[places]] entry or name/lat/lon"
        return None, f"no place '{d.place_id}' in [[places]] and no inline name/lat/lon"
    return (
        Place(
            place_id=d.place_id or d.device_id,
            name=d.name,
            lat=d.lat,
            lon=d.lon,
            grids=GridRef(**d.grids),
        ),
        "",
    )
