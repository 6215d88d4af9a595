"""A seeded stream of bad sensor messages, each with the reason it must be rejected for.

``fuzz_cases(seed, bad, valid)`` returns the same list for the same
arguments: ``bad`` messages of every kind below, interleaved with ``valid``
readings (flat and params vendor styles, every ``ts`` format) of the
devices in :data:`FUZZ_DEVICES`. Each case carries the reason the parser
(:func:`fuzz_parser`) followed by the reading checks (:func:`fuzz_checks`)
must give, or ``None`` for a valid reading, and a simulated receive time.
The stateful kinds (duplicate, out of order, clock skew) depend on the
order: feed the cases in list order.

For a run through a real broker, pass ``start`` = now: device times of
valid readings stay within a minute or so of ``start + i * step_s``.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ingest.reading_checks import ReadingChecks, ReadingChecksConfig
from ingest.sensor_payload import MAX_PAYLOAD_BYTES, PayloadSpec, RejectReason, SensorParser
from ingest.topic_layout import TopicLayout

R = RejectReason
_UNSENDABLE = re.compile(r"[+#\x00-\x1f\x7f-\x9f\ud800-\udfff]")
LAYOUT = TopicLayout()
FUZZ_SPECS: dict[str, PayloadSpec] = {
    "water_level": PayloadSpec(vendor="params", value_key="level", unit="m"),
    "bin_fill": PayloadSpec(vendor="flat", value_key="fill", unit="%"),
    "noise": PayloadSpec(vendor="flat", unit="dB"),
    "smoke": PayloadSpec(vendor="flat"),
    "door_contact": PayloadSpec(vendor="params"),
}
STATE_ONLY = {"smoke", "door_contact"}
STATES = {"smoke": ("normal", "alarm", "tamper"), "door_contact": ("closed", "open")}
FUZZ_CHECKS = ReadingChecksConfig()
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class FuzzDevice:
    town: str
    device_type: str
    device_id: str

    @property
    def topic(self) -> str:
        return LAYOUT.topic(self.town, self.device_type, self.device_id)

    @property
    def spec(self) -> PayloadSpec:
        return FUZZ_SPECS[self.device_type]


FUZZ_DEVICES: tuple[FuzzDevice, ...] = tuple(
    FuzzDevice(town, kind, f"{kind[:2]}-{town[-1]}{n}")
    for town in ("town-1", "town-2", "镇-3")
    for kind in FUZZ_SPECS
    for n in range(4)
)


@dataclass(frozen=True)
class FuzzCase:
    kind: str  # what is wrong, e.g. truncated_json; "valid" for a good reading
    topic: str
    payload: bytes
    expected: RejectReason | None  # None: must become a reading
    received_at: datetime

    @property
    def deliverable(self) -> bool:
        """Whether a real broker delivers it to a subscriber of the layout's filter.

        MQTT forbids wildcards, NUL and lone surrogates in a published topic,
        mosquitto refuses control characters, and a topic outside the
        subscription filter never reaches the ingest at all.
        """
        if not self.topic or _UNSENDABLE.search(self.topic):
            return False
        levels, wanted = self.topic.split("/"), LAYOUT.filter.split("/")
        return len(levels) == len(wanted) and all(
            w == "+" or w == level for w, level in zip(wanted, levels, strict=True)
        )


def fuzz_parser() -> SensorParser:
    return SensorParser(LAYOUT, FUZZ_SPECS, max_bytes=MAX_PAYLOAD_BYTES)


def fuzz_checks() -> ReadingChecks:
    return ReadingChecks(FUZZ_CHECKS, known_devices={d.device_id for d in FUZZ_DEVICES})


@dataclass
class _Sent:
    payload: bytes


@dataclass
class _DeviceState:
    seq: int = 0
    newest_ms: int = 0  # device time of the newest accepted reading
    accepted: list[_Sent] = field(default_factory=list)


def _dumps(body: object) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its \u escape can be sent
        return json.dumps(body).encode("utf-8")


ZONES = (UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)))
JUNK = ("🔥", "ālarm", "\u202eevil", "zero\u200bwidth", "\ud800", "\x07bell", "a b", "Ω", "-")


class _Generator:
    def __init__(self, seed: int, start: datetime, step_s: float) -> None:
        self.rng = random.Random(seed)
        self.step_ms = max(10, round(step_s * 1000))
        self.now_ms = round(start.timestamp() * 1000)
        self.devices = {d.device_id: _DeviceState() for d in FUZZ_DEVICES}
        self.cases: list[FuzzCase] = []

    # -- payload parts ------------------------------------------------------

    def _iso(self, ms: int) -> str:
        zone = self.rng.choice(ZONES)
        text = datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")

    def _ts(self, ms: int, whole_seconds: bool) -> object:
        if whole_seconds:
            return ms // 1000
        match self.rng.randrange(3):
            case 0:
                return ms
            case 1:
                return round(ms / 1000, 3)
            case _:
                return self._iso(ms)

    def _fields(self, device: FuzzDevice) -> dict[str, Any]:
        rng = self.rng
        fields: dict[str, Any] = {}
        if device.device_type in STATE_ONLY:
            fields["state"] = rng.choice(STATES[device.device_type])
        else:
            fields[device.spec.value_key] = round(rng.uniform(0, 100), 3)
            if rng.random() < 0.5 and device.spec.unit:
                fields["unit"] = device.spec.unit
            if rng.random() < 0.1:
                fields["state"] = "NORMAL"  # states are case-insensitive
        if rng.random() < 0.4:
            fields["battery"] = rng.choice((rng.randint(0, 100), round(rng.uniform(0, 100), 1)))
        return fields

    @staticmethod
    def _body(
        device: FuzzDevice, fields: dict[str, Any], ts: object | None, seq: int | None
    ) -> dict[str, Any]:
        if device.spec.vendor == "flat":
            body = dict(fields)
            if ts is not None:
                body["ts"] = ts
            if seq is not None:
                body["seq"] = seq
            return body
        body = {"params": dict(fields), "rssi": -70}  # vendors' own fields are ignored
        if ts is not None:
            body["ts"] = ts
        if seq is not None:
            body["msgId"] = seq
        return body

    def add(self, kind: str, topic: str, payload: bytes, expected: RejectReason | None) -> None:
        at = datetime.fromtimestamp(self.now_ms / 1000, UTC)
        self.cases.append(FuzzCase(kind, topic, payload, expected, at))
        self.now_ms += self.step_ms

    # -- valid readings and the stateful kinds ------------------------------

    def valid(self, device: FuzzDevice | None = None, full: bool = False) -> None:
        rng = self.rng
        device = device or rng.choice(FUZZ_DEVICES)
        state = self.devices[device.device_id]
        pick = 0 if full else rng.randrange(10)
        has_ts, has_seq = pick != 8, pick != 9
        ts: object | None = None
        if has_ts:
            whole = rng.random() < 0.25
            ms = max(self.now_ms, state.newest_ms + 10)
            ms = -(-ms // 1000) * 1000 if whole else -(-ms // 10) * 10
            state.newest_ms = ms
            ts = self._ts(ms, whole)
        seq: int | None = None
        if has_seq:
            state.seq += 1
            seq = state.seq
        payload = _dumps(self._body(device, self._fields(device), ts, seq))
        state.accepted.append(_Sent(payload))
        del state.accepted[:-8]  # a duplicate repeats one of the last 8: within the window
        self.add("valid", device.topic, payload, None)

    def duplicate(self) -> None:
        device = self.rng.choice(FUZZ_DEVICES)
        sent = self.rng.choice(self.devices[device.device_id].accepted)
        self.add("duplicate", device.topic, sent.payload, R.DUPLICATE)

    def _timed(self, kind: str, ms: int, reason: RejectReason) -> None:
        device = self.rng.choice(FUZZ_DEVICES)
        state = self.devices[device.device_id]
        if kind == "out_of_order":  # older than the newest, never a time already sent
            ms = state.newest_ms - self.rng.randint(1, 600) * 1000 - 3
        state.seq += 1  # a fresh seq: not a duplicate
        ts: object = ms if self.rng.random() < 0.5 else self._iso(ms)
        body = self._body(device, self._fields(device), ts, state.seq)
        self.add(kind, device.topic, _dumps(body), reason)

    def out_of_order(self) -> None:
        self._timed("out_of_order", 0, R.OUT_OF_ORDER)

    def clock_skew(self) -> None:
        rng = self.rng
        if rng.random() < 0.5:
            ms = self.now_ms + round(FUZZ_CHECKS.max_skew_s * 1000) + rng.randint(1, 86400_000)
        else:
            ms = self.now_ms - round(FUZZ_CHECKS.max_age_s * 1000) - rng.randint(1, 10**9)
        self._timed("clock_skew", ms, R.CLOCK_SKEW)

    def unknown_device(self) -> None:
        model = self.rng.choice(FUZZ_DEVICES)
        ghost = FuzzDevice(model.town, model.device_type, f"ghost-{self.rng.randrange(10**6)}")
        body = self._body(ghost, self._fields(ghost), self.now_ms, 1)
        self.add("unknown_device", ghost.topic, _dumps(body), R.UNKNOWN_DEVICE)

    # -- stateless kinds: rejected by the parser whatever came before -------

    def stateless(self, kind: str) -> None:
        device = self.rng.choice(FUZZ_DEVICES)
        topic, payload, reason = getattr(self, f"_{kind}")(device)
        self.add(kind, topic, payload, reason)

    def _good(self, device: FuzzDevice) -> dict[str, Any]:
        return self._body(device, self._fields(device), self.now_ms, 1)

    def _not_json(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        junk = rng.choice(
            (
                b"{not json",
                b"",
                b"   ",
                b"value=0.42",
                b"{'value': 1}",
                b'{"value": 1,}',
                b'{"value": 01}',
                b'{"value": 1} {"value": 2}',
                b'{"state": "\\uZZZZ"}',
                b"<xml value='1'/>",
                b"\xef\xbb\xbf" + _dumps(self._good(d)),  # UTF-8 byte order mark
                json.dumps(self._good(d)).encode("utf-16"),
                "".join(rng.choices(string.printable, k=rng.randint(1, 80))).encode() + b"\x01{",
            )
        )
        return d.topic, junk, R.NOT_JSON

    def _binary(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        lead = self.rng.choice((b"\xff", b"\x00", b"\xc3\x28", b"\x80"))
        return d.topic, lead + self.rng.randbytes(self.rng.randint(0, 512)), R.NOT_JSON

    def _truncated(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        payload = _dumps(self._good(d))  # ends with its closing brace: every prefix is bad
        return d.topic, payload[: self.rng.randrange(len(payload))], R.NOT_JSON

    def _set(self, d: FuzzDevice, key: str, value: object) -> bytes:
        body = self._good(d)
        top = d.spec.vendor == "flat" or key in ("ts", "msgId")
        (body if top else body["params"])[key] = value
        return _dumps(body)

    def _wrong_type(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        seq_key = "seq" if d.spec.vendor == "flat" else "msgId"
        key, bad = rng.choice(
            (
                (d.spec.value_key, rng.choice(("high", "0.42", [1], {"v": 1}, True, False))),
                ("ts", rng.choice(([1], True, {"t": 1}, "yesterday", "1763600000", ""))),
                ("ts", rng.choice(("2026-11-22T10:00:00", "2026-11-22", "2026-13-45T10:00Z"))),
                ("battery", rng.choice(("87", True, [87], {"pct": 87}))),
                (seq_key, rng.choice(("12", 1.5, True, [1], 12.0))),
                ("state", rng.choice((5, True, ["alarm"], {"s": 1}, ""))),
                ("unit", rng.choice((5, ["m"], True, {"u": "m"}))),
            )
        )
        payload = self._set(d, key, bad)
        if d.spec.vendor == "params" and rng.random() < 0.2:
            body = self._good(d)
            body["params"] = rng.choice(([1, 2], "level=1", 5, None, True))
            payload = _dumps(body)
        return d.topic, payload, R.BAD_FIELDS

    def _unit_mismatch(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        d = self.rng.choice([x for x in FUZZ_DEVICES if x.spec.unit])
        return d.topic, self._set(d, "unit", self.rng.choice(("cm", "ft", "M", "%%"))), R.BAD_FIELDS

    def _nan_inf(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        key = self.rng.choice((d.spec.value_key, "battery", "ts"))
        bad = self.rng.choice((math.nan, math.inf, -math.inf))
        return d.topic, self._set(d, key, bad), R.BAD_FIELDS

    def _huge_number(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        seq_key = "seq" if d.spec.vendor == "flat" else "msgId"
        key, bad = rng.choice(
            (
                (d.spec.value_key, rng.choice((1e13, -1e300, 10**30, -(10**19), 1.7e308))),
                ("battery", rng.choice((100.5, 1000, -5, -0.1))),
                ("ts", rng.choice((1e20, 10**25, -1, 0, 1e14))),
                (seq_key, rng.choice((2**64, -1, 10**40))),
            )
        )
        payload = self._set(d, key, bad)
        if rng.random() < 0.2:  # beyond the decoder: 1e400 is infinity, 5000 digits too long
            token = rng.choice((b"1e400", b"-1e400", b"9" * 5000))
            payload = self._set(d, d.spec.value_key, 0).replace(
                f'"{d.spec.value_key}": 0'.encode(), f'"{d.spec.value_key}": '.encode() + token
            )
        return d.topic, payload, R.BAD_FIELDS

    def _missing_value(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        body = self._good(d)
        fields = body if d.spec.vendor == "flat" else body["params"]
        for key in (d.spec.value_key, "state", "battery"):
            fields.pop(key, None)
        if rng.random() < 0.3:
            fields["valeur" if d.spec.value_key != "valeur" else "v"] = 0.5  # an unknown key
        if d.spec.vendor == "params" and rng.random() < 0.3:
            del body["params"]
        if rng.random() < 0.1:
            body = {}
        fields_null = rng.random() < 0.2
        if fields_null and d.spec.vendor == "flat":
            body[d.spec.value_key] = None
        return d.topic, _dumps(body), R.BAD_FIELDS

    def _nested_garbage(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        depth = rng.choice((3, 50, 900, 5000, 20000))
        match rng.randrange(3):
            case 0:  # nested inside the value
                inner = "[" * depth + "]" * depth
                payload = self._set(d, d.spec.value_key, 0).replace(
                    f'"{d.spec.value_key}": 0'.encode(),
                    f'"{d.spec.value_key}": {inner}'.encode(),
                )
            case 1:  # the whole payload nested objects (kept under the size limit)
                depth = min(depth, 5000)
                payload = ('{"a": ' * depth + "1" + "}" * depth).encode()
            case _:
                payload = ("[" * depth + "]" * depth).encode()
        return d.topic, payload, R.BAD_FIELDS

    def _not_object(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        junk = self.rng.choice((b"[1, 2]", b"42", b'"value"', b"null", b"true", b"[{}]", b"-0.5"))
        return d.topic, junk, R.BAD_FIELDS

    def _unicode_junk(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        junk = rng.choice(JUNK)
        if rng.random() < 0.5:
            payload = self._set(d, "state", junk + rng.choice(("", "alarm")))
        else:
            payload = self._set(d, "unit", rng.choice(("\x00", "\x1b[31m", "\ud800", "m" * 40)))
        return d.topic, payload, R.BAD_FIELDS

    def _bad_topic(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        t, k, i = d.town, d.device_type, d.device_id
        topic = rng.choice(
            (
                f"neuron/{t}/{k}/up",
                f"neuron/{t}/{k}/{i}/up/extra",
                f"neuron/{t}/{k}/{i}/down",
                f"neutron/{t}/{k}/{i}/up",
                f"neuron//{k}/{i}/up",
                f"neuron/{t}//{i}/up",
                f"neuron/{t}/{k}//up",
                f"/neuron/{t}/{k}/{i}/up",
                f"neuron/{t}/{k}/{i}/up/",
                f"neuron/{t}/{k}/+/up",
                f"neuron/{t}/#",
                f"$SYS/broker/{i}",
                "",
                "/",
                f"neuron/{t}/{k}/{i}/" + "u" * 2000,
                "neuron/" + "/".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 40))),
            )
        )
        return topic, _dumps(self._good(d)), R.BAD_TOPIC

    def _bad_topic_value(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        rng = self.rng
        t, k, i = d.town, d.device_type, d.device_id
        topic = rng.choice(
            (
                f"neuron/{t}/{k}/{i.upper()}/up",
                f"neuron/{t}/{k}/wl 1/up",
                f"neuron/{t}/{k}/烟感-1/up",
                f"neuron/{t}/{k}/-{i}/up",
                f"neuron/{t}/{k}/{'x' * 200}/up",
                f"neuron/{t}/Water_Level/{i}/up",
                f"neuron/{t}/{k}\x00/{i}/up",
                f"neuron/to\x01wn/{k}/{i}/up",
                f"neuron/{'t' * 200}/{k}/{i}/up",
                f"neuron/\ud800/{k}/{i}/up",
            )
        )
        return topic, _dumps(self._good(d)), R.BAD_FIELDS

    def _oversized(self, d: FuzzDevice) -> tuple[str, bytes, RejectReason]:
        body = self._good(d)
        size = MAX_PAYLOAD_BYTES + self.rng.choice((1, 2, 100, 10_000, 100_000))
        body["pad"] = ""
        base = len(_dumps(body))
        body["pad"] = "x" * (size - base)
        return d.topic, _dumps(body), R.OVERSIZED


STATELESS = (
    "not_json",
    "binary",
    "truncated",
    "wrong_type",
    "unit_mismatch",
    "nan_inf",
    "huge_number",
    "missing_value",
    "nested_garbage",
    "not_object",
    "unicode_junk",
    "bad_topic",
    "bad_topic_value",
    "oversized",
)
STATEFUL = ("duplicate", "out_of_order", "clock_skew", "unknown_device")
BAD_KINDS = STATELESS + STATEFUL


def fuzz_cases(
    seed: int = 4, bad: int = 5000, valid: int = 2000, start: datetime = T0, step_s: float = 0.01
) -> list[FuzzCase]:
    """``bad`` bad messages (every kind in turn, shuffled) among ``valid`` good readings."""
    if valid < len(FUZZ_DEVICES):
        raise ValueError(f"valid must be at least {len(FUZZ_DEVICES)}: one per device first")
    gen = _Generator(seed, start, step_s)
    for device in FUZZ_DEVICES:  # every device has history: the stateful kinds need it
        gen.valid(device, full=True)
    slots = [BAD_KINDS[i % len(BAD_KINDS)] for i in range(bad)]
    slots += ["valid"] * (valid - len(FUZZ_DEVICES))
    gen.rng.shuffle(slots)
    for kind in slots:
        if kind == "valid":
            gen.valid()
        elif kind in STATEFUL:
            getattr(gen, kind)()
        else:
            gen.stateless(kind)
    return gen.cases
