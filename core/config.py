"""Config primitives every service shares: the strict section base, errors that name
field paths, reading a TOML/JSON file, and the ``[[places]]`` entries.

Each service defines and validates the sections it uses (``edge.config``,
``pipeline.config``); one file may hold several services' sections, and the
app shell (``streetwatch.config``) checks a whole file. Validators are pure:
no file, network or environment access.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from core.records import GridRef, Place, Slug

Point = Annotated[list[float], Field(min_length=2, max_length=2, description="[x, y]")]


def _base_url(v: str) -> str:
    if v and not v.startswith(("http://", "https://")):
        raise ValueError(f"'{v}' is not an http(s):// URL")
    return v.rstrip("/")


#: An http(s):// base URL, without a trailing slash; "" for none.
BaseUrl = Annotated[str, AfterValidator(_base_url)]


class Section(BaseModel):
    """Strict: unknown keys are errors and values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Problem = tuple[str, str]  # (field path, what is wrong)


class ConfigError(Exception):
    """A configuration file that cannot be used; ``problems`` name each field."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in self.problems]
        super().__init__(f"invalid config {source}:\n" + "\n".join(lines))


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


def duplicate_places(places: Sequence[PlaceConfig]) -> list[Problem]:
    """A problem for every ``place_id`` given twice."""
    seen: set[str] = set()
    problems = []
    for i, p in enumerate(places):
        if p.place_id in seen:
            problems.append((f"places[{i}].place_id", f"duplicate place_id '{p.place_id}'"))
        seen.add(p.place_id)
    return problems


def field_path(loc: Sequence[int | str]) -> str:
    """pydantic's error location as the file's path: ``cameras[0].rules[1].zone``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


S = TypeVar("S", bound=BaseModel)


def validate_sections(model: type[S], data: object, source: str, tags: Collection[str] = ()) -> S:
    """``model`` validated from ``data``; every problem named by its field path.

    ``tags`` are the ``type`` values of the plugin unions in ``model``
    (pydantic puts a union member's tag into the path; the file has no such
    key). Raises :class:`ConfigError`.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p in tags)]
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif "input" in err and err["type"].endswith("_type"):
                msg = f"{msg} (got {type(err['input']).__name__} {err['input']!r})"
            problems.append((field_path(loc), msg))
        raise ConfigError(source, problems) from None


def read_document(path: Path) -> dict[str, object]:
    """The top-level table of a TOML (or, by suffix, JSON) file; raise :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read file: {exc.strerror}")]) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(str(path), [("", f"not valid JSON: {exc}")]) from None
        if not isinstance(data, dict):
            raise ConfigError(str(path), [("", "a JSON config must be an object")])
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"not valid TOML: {exc}")]) from None
