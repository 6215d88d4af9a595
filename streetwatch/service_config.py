"""Config files as each service reads them: its own sections, checked; nothing more.

``streetwatch dispatch`` (and the other central commands) read a file that
holds only the dispatch service's sections without importing the edge
box's stack: the central machine needs no OpenCV, onnxruntime, device list
or camera to start. A file that also holds the edge's sections (the demo's)
is read whole (:func:`streetwatch.config.load_config`), so its device
places join the dispatch service's sites as they do the edge's.

Likewise ``streetwatch edge`` reads an edge-only file by the edge's sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.config import read_document
from pipeline.config import DISPATCH_SECTIONS, DispatchServiceConfig, parse_dispatch_config

if TYPE_CHECKING:
    from centre.config import CentreServiceConfig
    from edge.config import EdgeServiceConfig


def load_dispatch_config(path: Path) -> DispatchServiceConfig:
    """The dispatch service's config from ``path``; raise ``ConfigError``."""
    data = read_document(path)
    if set(data) <= DISPATCH_SECTIONS:
        return parse_dispatch_config(data, str(path))
    from streetwatch.config import load_config  # the file holds other sections too

    return load_config(path)


def load_edge_config(path: Path) -> EdgeServiceConfig:
    """The edge box's config from ``path``; raise ``ConfigError``."""
    from edge.config import EDGE_SECTIONS, parse_edge_config, resolve_paths

    data = read_document(path)
    if set(data) <= EDGE_SECTIONS:
        return parse_edge_config(resolve_paths(data, path.parent), str(path))
    from streetwatch.config import load_config  # the file holds other sections too

    return load_config(path)


def load_centre_config(path: Path) -> CentreServiceConfig:
    """The central web services' config from ``path``; raise ``ConfigError``."""
    from centre.config import CENTRE_SECTIONS, parse_centre_config

    data = read_document(path)
    if set(data) <= CENTRE_SECTIONS:
        return parse_centre_config(data, str(path))
    from streetwatch.config import load_config  # the file holds other sections too

    return load_config(path)
