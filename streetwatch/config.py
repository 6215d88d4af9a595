"""A whole streetwatch config file: the edge's sections and the dispatch service's.

Each service validates the sections it uses (``edge.config``,
``pipeline.config``); this app-shell module puts them together for the
commands that need both (``demo``, ``check-config``, ``replay``) and for a
file that holds both. :class:`Config` is both an
:class:`~edge.config.EdgeServiceConfig` and a
:class:`~pipeline.config.DispatchServiceConfig`, so either service takes it
as it is. Sections the two share (``[kafka]``, ``[[places]]``,
``[[place_groups]]``, ``[dedup]``) are one and the same.

Strict: unknown keys are errors, types are not coerced (``"5"`` is not 5),
references between sections (a rule's zone, a zone's place) must resolve.
:func:`load_config` turns every problem into one :class:`ConfigError` whose
lines each name the field path, e.g.
``cameras[0].rules[0].zone: no zone 'bay' on camera 'cam-1'``.
"""

from __future__ import annotations

from pathlib import Path

from centre.config import CentreServiceConfig
from core.config import ConfigError as ConfigError
from core.config import read_document, validate_sections
from edge.config import PLUGIN_TAGS, EdgeServiceConfig, check_edge, resolve_paths
from pipeline.config import DispatchServiceConfig


class Config(EdgeServiceConfig, DispatchServiceConfig, CentreServiceConfig):
    """Every section of a streetwatch file: the edge box's, the dispatch service's and
    the central web services'."""


ALL_SECTIONS: frozenset[str] = frozenset(Config.model_fields)


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-parsed TOML data; raise :class:`ConfigError`."""
    cfg = validate_sections(Config, data, source, PLUGIN_TAGS)
    check_edge(cfg, source)  # also catches duplicate places, which both services share
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate a TOML (or, by suffix, JSON) config file; raise :class:`ConfigError`."""
    return parse_config(resolve_paths(read_document(path), path.parent), str(path))
