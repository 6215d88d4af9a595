"""Neuron sensor messages: payload parsing for two vendor styles.

A message arrives on a topic laid out by :class:`~ingest.topic_layout.TopicLayout`
(default ``neuron/{town}/{type}/{device_id}/up``) with a JSON payload in one
of two styles, chosen per device type by a :class:`PayloadSpec`:

- ``flat``: ``{"value": 0.42, "unit": "m", "ts": 1763600000, "state": "normal",
  "battery": 87, "seq": 12}``
- ``params``: ``{"ts": 1763600000123, "msgId": 12, "params": {"level": 0.42,
  "unit": "m", "state": "normal", "battery": 87}}``

Every field but one of value/state/battery is optional; ``ts`` is epoch
seconds, epoch milliseconds or ISO 8601 with a zone. A message that cannot
be read raises :class:`BadReading` with a reason from :class:`RejectReason`
-- and nothing else, whatever the bytes -- so rejects can be counted per
reason and sent to the dead-letter topic. docs/sensors.md has the details.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from core.config import Section
from core.records import SensorReading

if TYPE_CHECKING:
    from ingest.topic_layout import TopicLayout


class RejectReason(StrEnum):
    """Why a message was not used: one fixed word per cause."""

    OVERSIZED = "oversized"  # payload longer than max_bytes
    BAD_TOPIC = "bad_topic"  # topic does not fit the layout
    NOT_JSON = "not_json"  # payload is not UTF-8 JSON text
    BAD_FIELDS = "bad_fields"  # JSON, but a field is missing, of the wrong type or out of range
    UNKNOWN_DEVICE = "unknown_device"  # no such device in the registry
    DUPLICATE = "duplicate"  # the same reading again (same seq, or same time+value+state)
    OUT_OF_ORDER = "out_of_order"  # device time older than the device's last accepted reading
    CLOCK_SKEW = "clock_skew"  # device time too far ahead of, or behind, the receive time


class BadReading(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class PayloadSpec(Section):
    """How one device type's payloads are laid out."""

    vendor: Literal["flat", "params"] = Field(
        default="flat",
        description="flat: fields at the top level; params: fields inside a params object, "
        "ts and msgId at the top",
    )
    value_key: str = Field(
        default="value",
        min_length=1,
        max_length=64,
        description="Key of the measurement (in params for the params style), e.g. level",
    )
    unit: str = Field(
        default="",
        max_length=32,
        description="Unit of the value; a payload naming another unit is rejected. "
        "Empty: take the payload's unit as it is",
    )


DEFAULT_SPEC = PayloadSpec()
MAX_PAYLOAD_BYTES = 65536
MAX_ABS_VALUE = 1e12  # larger measurements are garbage, whatever the unit
MAX_SEQ = 2**63 - 1
EPOCH_MS_FROM = 1e11  # a number ts at or above this is epoch ms (1e11 s is the year 5138)
EPOCH_LIMIT = 1e14  # ... and below this (1e14 ms is the year 5138)

_slug = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,127}").fullmatch
_town = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff/+#]{1,128}").fullmatch
_state = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}").fullmatch
_unit = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{0,32}").fullmatch


def _bad(detail: str) -> BadReading:
    return BadReading(RejectReason.BAD_FIELDS, detail[:200])


def _short(value: object) -> str:
    return repr(value)[:60]


def device_time(ts: object) -> datetime | None:
    """A payload's ``ts`` as an aware UTC datetime (None when absent)."""
    if ts is None:
        return None
    if type(ts) is int or type(ts) is float:
        if not 0 < ts < EPOCH_LIMIT:  # also false for NaN
            raise _bad(f"ts out of range: {_short(ts)}")
        return datetime.fromtimestamp(ts / 1000 if ts >= EPOCH_MS_FROM else ts, tz=UTC)
    if type(ts) is str:
        if len(ts) > 40:
            raise _bad(f"ts is not ISO 8601: {_short(ts)}")
        try:
            parsed = datetime.fromisoformat(ts)
            if parsed.tzinfo is None:
                raise _bad(f"ts has no time zone: {_short(ts)}")
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise _bad(f"ts is not ISO 8601 with a zone: {_short(ts)}") from None
    raise _bad(f"ts must be epoch seconds, epoch ms or ISO 8601, got {_short(ts)}")


def _number(name: str, raw: object, low: float, high: float) -> float | None:
    if raw is None:
        return None
    if type(raw) is float:
        if not low <= raw <= high:  # also false for NaN
            raise _bad(f"{name} out of range [{low:g}, {high:g}]: {_short(raw)}")
        return raw
    if type(raw) is int:
        if not low <= raw <= high:  # exact int/float comparison: no overflow
            raise _bad(f"{name} out of range [{low:g}, {high:g}]: {_short(raw)}")
        return float(raw)
    raise _bad(f"{name} must be a number, got {_short(raw)}")


def _seq(raw: object) -> int | None:
    if raw is None:
        return None
    if type(raw) is not int:
        raise _bad(f"seq must be an integer, got {_short(raw)}")
    if not 0 <= raw <= MAX_SEQ:
        raise _bad(f"seq out of range: {_short(raw)}")
    return raw


def _state_of(raw: object) -> str | None:
    if raw is None:
        return None
    if type(raw) is not str or not _state(raw):
        raise _bad(f"state must be a word of letters, digits and _.:- (<= 64), got {_short(raw)}")
    return raw.lower()


def _unit_of(raw: object, spec: PayloadSpec) -> str:
    if raw is None or raw == "":
        return spec.unit
    if type(raw) is not str or not _unit(raw):
        raise _bad(f"unit must be a short string, got {_short(raw)}")
    if spec.unit and raw != spec.unit:
        raise _bad(f"unit {raw!r} is not the expected {spec.unit!r}")
    return raw


class SensorParser:
    """Turns (topic, payload) into a :class:`SensorReading` or raises :class:`BadReading`.

    ``specs`` maps a device type to its :class:`PayloadSpec`; other types use
    ``default_spec``. The parser keeps no state besides a bounded cache of
    topics already checked, so it is safe to share between threads.
    """

    TOPIC_CACHE = 4096

    def __init__(
        self,
        layout: TopicLayout | None = None,
        specs: Mapping[str, PayloadSpec] | None = None,
        default_spec: PayloadSpec = DEFAULT_SPEC,
        max_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.layout = layout if layout is not None else _default_layout()
        self.specs = dict(specs or {})
        self.default_spec = default_spec
        self.max_bytes = max_bytes
        self._topics: dict[str, tuple[str, str, str]] = {}

    def parse(self, topic: str, payload: bytes, received_at: datetime) -> SensorReading:
        """``received_at`` must be aware (a naive one is a programming error: ValueError)."""
        if received_at.tzinfo is None:
            raise ValueError("received_at must be an aware datetime")
        if len(payload) > self.max_bytes:
            raise BadReading(RejectReason.OVERSIZED, f"{len(payload)} bytes > {self.max_bytes}")
        where = self._topics.get(topic)
        if where is None:
            where = self._topic(topic)
        town, device_type, device_id = where
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadReading(RejectReason.NOT_JSON, str(exc)[:120]) from None
        except RecursionError:
            raise _bad("JSON nested too deeply") from None
        except ValueError as exc:  # e.g. an integer longer than 4300 digits
            raise _bad(str(exc)[:120]) from None
        if type(body) is not dict:
            raise _bad(f"payload must be a JSON object, got {type(body).__name__}")
        spec = self.specs.get(device_type, self.default_spec)
        if spec.vendor == "flat":
            fields: dict[str, Any] = body
            ts, seq = body.get("ts"), body.get("seq")
        else:
            params = body.get("params")
            if type(params) is not dict:
                raise _bad(f"params must be a JSON object, got {_short(params)}")
            fields = params
            ts, seq = body.get("ts"), body.get("msgId")
        value = _number(spec.value_key, fields.get(spec.value_key), -MAX_ABS_VALUE, MAX_ABS_VALUE)
        state = _state_of(fields.get("state"))
        battery = _number("battery", fields.get("battery"), 0.0, 100.0)
        if value is None and state is None and battery is None:
            raise _bad(f"no {spec.value_key}, state or battery in the payload")
        unit = _unit_of(fields.get("unit"), spec)
        seq_no, at = _seq(seq), device_time(ts)
        # Every field is checked above; pydantic's own (compiled) validation is
        # still faster than model_construct, and a safety net.
        try:
            return SensorReading(
                device_id=device_id,
                device_type=device_type,
                town=town,
                value=value,
                unit=unit,
                state=state,
                battery_pct=battery,
                seq=seq_no,
                device_time=at,
                received_at=received_at,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise _bad(f"{loc}: {first['msg']}") from None

    def _topic(self, topic: str) -> tuple[str, str, str]:
        parts = self.layout.parse(topic)
        if not _slug(parts.device_id):
            raise _bad(f"device id in topic is not a slug: {_short(parts.device_id)}")
        if not _slug(parts.device_type):
            raise _bad(f"device type in topic is not a slug: {_short(parts.device_type)}")
        if parts.town and not _town(parts.town):
            raise _bad(f"town in topic is too long or has control characters: {_short(parts.town)}")
        where = (parts.town, parts.device_type, parts.device_id)
        if len(self._topics) >= self.TOPIC_CACHE:
            self._topics.clear()
        self._topics[topic] = where
        return where


@cache
def _default_layout() -> TopicLayout:
    from ingest.topic_layout import TopicLayout  # imports this module: import late

    return TopicLayout()


@cache
def _parser(max_bytes: int) -> SensorParser:
    return SensorParser(max_bytes=max_bytes)


def parse_reading(
    topic: str,
    payload: bytes,
    received_at: datetime,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    spec: PayloadSpec | None = None,
) -> SensorReading:
    """Parse with the default topic layout and ``spec`` (default: flat, ``value``)."""
    if spec is None:
        return _parser(max_bytes).parse(topic, payload, received_at)
    return SensorParser(default_spec=spec, max_bytes=max_bytes).parse(topic, payload, received_at)
