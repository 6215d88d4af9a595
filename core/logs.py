"""Log formats: the usual text lines, or one JSON object a line (``--log-format json``).

A JSON line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``
and ``message``; a message written as ``event=name key=value ...`` (the
project's style) also has each of its ``key=value`` pairs as a field of its
own, as text (a value ends at the next blank). A pair never replaces one of
the four fields; ``exc_info`` holds a traceback, if any. The formatting is
python-json-logger's.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PAIR = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_FIELDS = ("time", "level", "logger", "message")


def event_fields(message: str) -> dict[str, str]:
    """The ``key=value`` pairs of a message that starts with ``event=`` (else none)."""
    if not message.startswith("event="):
        return {}
    return {key: value for key, value in _PAIR.findall(message)}


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, message and the event's pairs."""

    def __init__(self) -> None:
        super().__init__(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, value in event_fields(record.message).items():
            if key not in _FIELDS:
                log_data.setdefault(key, value)


def formatter(kind: LogFormat) -> logging.Formatter:
    """A fresh formatter of ``kind``."""
    return JsonLogFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


def root_log_format() -> LogFormat:
    """The format the root logger's handlers write (for child processes to follow)."""
    handlers = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonLogFormatter) for h in handlers) else "text"
