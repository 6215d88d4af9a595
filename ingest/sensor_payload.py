"""Neuron sensor messages: topic layout and payload parsing.

Topic: ``neuron/{town}/{device_type}/{device_id}/up``. Payload: a flat JSON
object ``{"value": 0.42, "ts": 1732240000 | "2026-11-22T10:00:00+08:00",
"unit": "m"}``; ``ts`` and ``unit`` are optional. A message that cannot be
read raises :class:`BadReading` with a reason from a fixed set, so that
rejects can be counted per reason.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import ValidationError

from streetwatch.records import SensorReading


class RejectReason(StrEnum):
    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    BAD_FIELDS = "bad_fields"
    UNKNOWN_DEVICE = "unknown_device"


class BadReading(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def _device_time(ts: object) -> datetime | None:
    if ts is None:
        return None
    if isinstance(ts, bool):
        raise BadReading(RejectReason.BAD_FIELDS, "ts must be epoch seconds or ISO 8601")
    if isinstance(ts, int | float):
        if not math.isfinite(ts) or not 0 < ts < 1e11:
            raise BadReading(RejectReason.BAD_FIELDS, f"ts out of range: {ts}")
        return datetime.fromtimestamp(ts, tz=UTC)
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            raise BadReading(RejectReason.BAD_FIELDS, f"ts is not ISO 8601: {ts[:40]!r}") from None
        if parsed.tzinfo is None:
            raise BadReading(RejectReason.BAD_FIELDS, "ts has no time zone")
        return parsed
    raise BadReading(RejectReason.BAD_FIELDS, "ts must be epoch seconds or ISO 8601")


def parse_reading(
    topic: str, payload: bytes, received_at: datetime, max_bytes: int = 65536
) -> SensorReading:
    if len(payload) > max_bytes:
        raise BadReading(RejectReason.OVERSIZED, f"{len(payload)} bytes > {max_bytes}")
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "neuron" or parts[4] != "up" or not all(parts[1:4]):
        raise BadReading(
            RejectReason.BAD_TOPIC, f"expected neuron/{{town}}/{{type}}/{{id}}/up: {topic[:120]!r}"
        )
    _, town, device_type, device_id, _ = parts
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadReading(RejectReason.NOT_JSON, str(exc)[:120]) from None
    if not isinstance(body, dict):
        raise BadReading(RejectReason.BAD_FIELDS, "payload must be a JSON object")
    value = body.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadReading(
            RejectReason.BAD_FIELDS, f"value must be a finite number, got {value!r}"[:120]
        )
    unit = body.get("unit", "")
    if not isinstance(unit, str):
        raise BadReading(RejectReason.BAD_FIELDS, "unit must be a string")
    try:
        return SensorReading(
            device_id=device_id,
            device_type=device_type,
            town=town,
            value=float(value),
            unit=unit,
            device_time=_device_time(body.get("ts")),
            received_at=received_at,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadReading(RejectReason.BAD_FIELDS, f"{where}: {first['msg']}") from None
