"""The running release: ``streetwatch --version``, ``/healthz`` and ``streetwatch_build_info``."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

#: the distribution's name (``[project] name`` in pyproject.toml)
DISTRIBUTION = "streetwatch"


@cache
def streetwatch_version() -> str:
    """The installed distribution's version; "unknown" in a tree that was never installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
