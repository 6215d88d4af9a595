"""Times as people at the centre read them: in a named zone, with its abbreviation."""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def local_time(t: datetime, tz: tzinfo) -> str:
    """``2026-11-22 10:42:51 CST`` for ``t`` in ``tz``."""
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def known_zone(name: str) -> str:
    """``name`` if it is an IANA time zone; raise ``ValueError`` naming it otherwise
    (for config validators)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}'") from None
    return name
