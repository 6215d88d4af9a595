"""Neuron payloads (flat and params styles), topic layout, reading checks, the fuzz corpus."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from core.records import SensorReading
from ingest.reading_checks import ReadingChecks, ReadingChecksConfig
from ingest.sensor_payload import (
    BadReading,
    PayloadSpec,
    RejectReason,
    SensorParser,
    parse_reading,
)
from ingest.topic_layout import TopicLayout, TopicParts
from tests.support.factories import T0, at
from tests.support.fuzz_payloads import (
    BAD_KINDS,
    FUZZ_DEVICES,
    fuzz_cases,
    fuzz_checks,
    fuzz_parser,
)

R = RejectReason
TOPIC = "neuron/town-1/water_level/wl-1/up"
EPOCH = int(T0.timestamp())
PARAMS = PayloadSpec(vendor="params", value_key="level", unit="m")


def reason_of(parser: SensorParser, topic: str, payload: bytes) -> RejectReason:
    with pytest.raises(BadReading) as err:
        parser.parse(topic, payload, at(0))
    return err.value.reason


# -- payload styles -----------------------------------------------------------


def test_flat_payload_with_every_field() -> None:
    payload = b'{"value": 0.62, "unit": "m", "ts": %d, "state": "Alarm", "battery": 87, "seq": 12}'
    r = parse_reading(TOPIC, payload % EPOCH, at(1))
    assert r == SensorReading(
        device_id="wl-1",
        device_type="water_level",
        town="town-1",
        value=0.62,
        unit="m",
        state="alarm",  # states are lower-cased
        battery_pct=87.0,
        seq=12,
        device_time=T0,
        received_at=at(1),
    )


def test_params_payload_takes_the_configured_value_key() -> None:
    parser = SensorParser(specs={"water_level": PARAMS})
    payload = b'{"ts": %d, "msgId": 7, "rssi": -70, "params": {"level": 0.42, "battery": 55.5}}'
    r = parser.parse(TOPIC, payload % (EPOCH * 1000 + 250), at(1))
    assert (r.value, r.unit, r.battery_pct, r.seq, r.state) == (0.42, "m", 55.5, 7, None)
    assert r.device_time == T0 + timedelta(milliseconds=250)
    # a flat payload for a params device type, or a value under another key, is a schema error
    assert reason_of(parser, TOPIC, b'{"level": 0.42}') is R.BAD_FIELDS
    assert reason_of(parser, TOPIC, b'{"params": {"value": 0.42}}') is R.BAD_FIELDS
    # other device types keep the default (flat, "value")
    other = parser.parse("neuron/town-1/noise/n-1/up", b'{"value": 61, "unit": "dB"}', at(0))
    assert other.value == 61.0


@pytest.mark.parametrize(
    "ts",
    [
        str(EPOCH),
        f"{EPOCH}.0",
        str(EPOCH * 1000),
        '"2026-11-20T09:00:00Z"',
        '"2026-11-20T17:00:00+08:00"',
        '"2026-11-20T09:00:00.000+00:00"',
    ],
)
def test_device_time_formats(ts: str) -> None:
    r = parse_reading(TOPIC, f'{{"value": 1, "ts": {ts}}}'.encode(), at(5))
    assert r.device_time == T0 and r.device_time.utcoffset() == timedelta(0)
    assert r.received_at == at(5)  # receive time is kept beside device time


def test_state_only_and_battery_only_messages() -> None:
    smoke = parse_reading("neuron/t/smoke/sm-1/up", b'{"state": "tamper"}', at(0))
    assert (smoke.value, smoke.state) == (None, "tamper")
    beat = parse_reading("neuron/t/smoke/sm-1/up", b'{"battery": 12}', at(0))
    assert (beat.value, beat.state, beat.battery_pct) == (None, None, 12.0)


def test_units_default_from_the_spec_and_must_match_it() -> None:
    spec = PayloadSpec(unit="m")
    assert parse_reading(TOPIC, b'{"value": 1}', at(0), spec=spec).unit == "m"
    assert parse_reading(TOPIC, b'{"value": 1, "unit": "m"}', at(0), spec=spec).unit == "m"
    with pytest.raises(BadReading, match="not the expected 'm'"):
        parse_reading(TOPIC, b'{"value": 100, "unit": "cm"}', at(0), spec=spec)
    assert parse_reading(TOPIC, b'{"value": 1, "unit": "cm"}', at(0)).unit == "cm"  # no spec unit


def test_payload_spec_is_strict_config() -> None:
    with pytest.raises(ValueError):
        PayloadSpec.model_validate({"vendor": "nested"})
    with pytest.raises(ValueError):
        PayloadSpec.model_validate({"vendor": "flat", "value_kye": "level"})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"value": 1e13}', R.BAD_FIELDS),
        (b'{"value": 1, "battery": 101}', R.BAD_FIELDS),
        (b'{"value": 1, "seq": -1}', R.BAD_FIELDS),
        (b'{"value": 1, "seq": 1.0}', R.BAD_FIELDS),
        (b'{"value": 1, "ts": 0}', R.BAD_FIELDS),
        (b'{"value": 1, "ts": 1e14}', R.BAD_FIELDS),
        (b'{"value": 1, "ts": "2026-11-20"}', R.BAD_FIELDS),
        (b'{"value": 1, "state": "al arm"}', R.BAD_FIELDS),
        (b'{"value": 1, "unit": 5}', R.BAD_FIELDS),
        (b'{"unit": "m", "ts": 1763600000}', R.BAD_FIELDS),
        (b'{"value": null}', R.BAD_FIELDS),
        (b'{"value": 1e400}', R.BAD_FIELDS),
        (b'{"value": ' + b"9" * 5000 + b"}", R.BAD_FIELDS),
        (b"[" * 50000 + b"]" * 10000, R.BAD_FIELDS),
        (b"\xef\xbb\xbf{}", R.NOT_JSON),
        (b"", R.NOT_JSON),
    ],
)
def test_more_bad_payloads(payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(BadReading) as err:
        parse_reading(TOPIC, payload, at(0), max_bytes=100_000)
    assert err.value.reason is reason
    assert err.value.detail


def test_naive_receive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_reading(TOPIC, b'{"value": 1}', datetime(2026, 1, 1))


# -- topic layout -------------------------------------------------------------


def test_default_topic_layout() -> None:
    layout = TopicLayout()
    assert layout.filter == "neuron/+/+/+/up"
    assert layout.parse(TOPIC) == TopicParts("town-1", "water_level", "wl-1")
    assert layout.topic("town-1", "water_level", "wl-1") == TOPIC


def test_custom_topic_layouts() -> None:
    layout = TopicLayout("city/sensors/{device_id}/{type}/data")
    assert layout.filter == "city/sensors/+/+/data"
    assert layout.parse("city/sensors/d-1/smoke/data") == TopicParts("", "smoke", "d-1")
    parser = SensorParser(layout)
    r = parser.parse("city/sensors/d-1/smoke/data", b'{"state": "alarm"}', at(0))
    assert (r.town, r.device_type, r.device_id) == ("", "smoke", "d-1")
    with pytest.raises(BadReading) as err:
        parser.parse(TOPIC, b'{"value": 1}', at(0))
    assert err.value.reason is R.BAD_TOPIC


@pytest.mark.parametrize(
    "template",
    [
        "neuron/{town}/{type}/up",
        "neuron/{town}/{device_id}/up",
        "neuron/{city}/{type}/{device_id}/up",
        "neuron/{type}/{type}/{device_id}/up",
        "neuron/+/{type}/{device_id}/up",
        "neuron/{type}/{device_id}/#",
        "neuron//{type}/{device_id}",
        "neuron/x{type}/{device_id}",
        "$SYS/{type}/{device_id}",
    ],
)
def test_invalid_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="topic template"):
        TopicLayout(template)


@pytest.mark.parametrize(
    "topic",
    [
        "neuron/town-1/water_level/up",
        "neuron/town-1/water_level/wl-1/up/x",
        "neuron/town-1/water_level/wl-1/down",
        "neuron//water_level/wl-1/up",
        "neuron/town-1/water_level/+/up",
        "neuron/town-1/water_level/wl-1/" + "u" * 2000,
        "",
    ],
)
def test_topics_outside_the_layout(topic: str) -> None:
    with pytest.raises(BadReading) as err:
        TopicLayout().parse(topic)
    assert err.value.reason is R.BAD_TOPIC


# -- reading checks -----------------------------------------------------------


def reading(
    s: float,
    *,
    device: str = "wl-1",
    value: float | None = 0.5,
    seq: int | None = None,
    device_s: float | None = None,
    state: str | None = None,
) -> SensorReading:
    return SensorReading(
        device_id=device,
        device_type="water_level",
        value=value,
        state=state,
        seq=seq,
        device_time=None if device_s is None else at(device_s),
        received_at=at(s),
    )


def rejected(checks: ReadingChecks, r: SensorReading) -> RejectReason | None:
    try:
        checks.check(r)
    except BadReading as bad:
        return bad.reason
    return None


def test_duplicates_by_seq_and_by_time_value_state() -> None:
    checks = ReadingChecks()
    assert rejected(checks, reading(0, seq=1, device_s=0)) is None
    assert rejected(checks, reading(1, seq=1, device_s=0)) is R.DUPLICATE  # redelivered
    assert rejected(checks, reading(2, seq=2, device_s=0)) is R.DUPLICATE  # same time+value
    assert rejected(checks, reading(2, seq=2, device_s=0, value=0.6)) is None
    assert rejected(checks, reading(3, seq=3)) is None  # no device time: seq only
    assert rejected(checks, reading(4, seq=3)) is R.DUPLICATE
    assert rejected(checks, reading(5, value=0.6)) is None  # nothing to tell: passes
    assert rejected(checks, reading(6, value=0.6)) is None
    # a counter that restarted (reboot) with a new device time is not a duplicate
    assert rejected(checks, reading(10, seq=1, device_s=10)) is None
    # other devices have their own history
    assert rejected(checks, reading(11, seq=1, device_s=10, device="wl-2")) is None


def test_out_of_order_with_tolerance() -> None:
    checks = ReadingChecks(ReadingChecksConfig(reorder_tolerance_s=2))
    assert rejected(checks, reading(10, device_s=10)) is None
    assert rejected(checks, reading(11, device_s=8.5, value=0.1)) is None  # within 2 s
    assert rejected(checks, reading(12, device_s=7.5, value=0.2)) is R.OUT_OF_ORDER
    assert rejected(checks, reading(13, device_s=11)) is None
    assert rejected(checks, reading(14)) is None  # no device time: never out of order


def test_clock_skew_ahead_and_behind() -> None:
    checks = ReadingChecks(ReadingChecksConfig(max_skew_s=60, max_age_s=3600))
    assert rejected(checks, reading(0, device_s=60)) is None
    assert rejected(checks, reading(0, device_s=61, value=1)) is R.CLOCK_SKEW
    assert rejected(checks, reading(3601, device_s=1.5, device="wl-2")) is None
    assert rejected(checks, reading(3602, device_s=1, device="wl-3")) is R.CLOCK_SKEW
    # a rejected reading leaves no trace: the same one, received later, passes
    assert rejected(checks, reading(10, device_s=61, value=1)) is None


def test_unknown_devices_are_rejected_before_any_state() -> None:
    checks = ReadingChecks(known_devices={"wl-1"})
    assert rejected(checks, reading(0, device="ghost")) is R.UNKNOWN_DEVICE
    assert len(checks) == 0
    assert rejected(checks, reading(0)) is None


def test_memory_is_bounded() -> None:
    checks = ReadingChecks(ReadingChecksConfig(recent=4, max_devices=10))
    for i in range(1000):
        checks.check(reading(i, device=f"d-{i % 50}", seq=i, device_s=i))
    assert len(checks) == 10
    device = checks._devices["d-49"]
    assert len(device.seqs) <= 4 and len(device.fingerprints) <= 4
    for i in range(20):  # one device: only the last 4 seqs are remembered
        checks.check(reading(2000 + i, device="one", seq=i))
    assert rejected(checks, reading(3000, device="one", seq=19)) is R.DUPLICATE
    assert rejected(checks, reading(3000, device="one", seq=3)) is None  # forgotten


# -- fuzz corpus --------------------------------------------------------------


def run(cases_seed: int = 4) -> tuple[Counter[str], Counter[str], int]:
    parser, checks = fuzz_parser(), fuzz_checks()
    got: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    accepted = 0
    for case in fuzz_cases(seed=cases_seed):
        try:
            checks.check(parser.parse(case.topic, case.payload, case.received_at))
            reason = None
            accepted += 1
        except BadReading as bad:
            reason = bad.reason
            got[bad.reason.value] += 1
        if reason != case.expected:
            wrong[f"{case.kind}: expected {case.expected} got {reason}"] += 1
    return got, wrong, accepted


def test_fuzz_corpus_each_bad_message_gets_its_reason_and_valid_ones_pass() -> None:
    cases = fuzz_cases()
    assert cases == fuzz_cases()  # deterministic
    assert len(cases) == 7000
    kinds = Counter(c.kind for c in cases)
    assert set(kinds) == {*BAD_KINDS, "valid"} and min(kinds.values()) > 250
    got, wrong, accepted = run()
    assert not wrong
    assert accepted == 2000
    expected = Counter(c.expected.value for c in cases if c.expected is not None)
    assert got == expected and sum(got.values()) == 5000
    assert set(got) == {r.value for r in RejectReason}


def test_fuzz_with_another_seed() -> None:
    _, wrong, accepted = run(cases_seed=11)
    assert not wrong and accepted == 2000


def test_mutated_payloads_and_topics_raise_nothing_but_bad_reading() -> None:
    rng = random.Random(7)
    parser = fuzz_parser()
    seeds = [c for c in fuzz_cases(bad=200, valid=200) if c.expected is None]
    outcomes: Counter[str] = Counter()
    for _ in range(20000):
        case = rng.choice(seeds)
        payload = bytearray(case.payload)
        for _ in range(rng.randint(1, 6)):
            match rng.randrange(4):
                case 0 if payload:
                    payload[rng.randrange(len(payload))] = rng.randrange(256)
                case 1 if payload:
                    del payload[rng.randrange(len(payload)) :]
                case 2:
                    pos = rng.randrange(len(payload) + 1)
                    payload[pos:pos] = rng.choice((b"NaN", b"{", b'"', b"\\u", b"\xff", b"-1e999"))
                case _:
                    pass
        topic = case.topic
        if rng.random() < 0.2:
            chars = list(topic)
            chars[rng.randrange(len(chars))] = chr(rng.randrange(0x110000))
            topic = "".join(chars)
        try:
            parser.parse(topic, bytes(payload), case.received_at)
            outcomes["reading"] += 1
        except BadReading as bad:
            outcomes[bad.reason.value] += 1
    assert outcomes["reading"] > 0 and outcomes["not_json"] > 0 and outcomes["bad_fields"] > 0


def test_fuzz_devices_cover_both_vendor_styles() -> None:
    assert {d.spec.vendor for d in FUZZ_DEVICES} == {"flat", "params"}
    assert any(not d.town.isascii() for d in FUZZ_DEVICES)  # towns may be any text


def test_fuzz_cases_for_a_real_broker_run() -> None:
    start = datetime.now(UTC)
    cases = fuzz_cases(bad=500, valid=500, start=start)
    deliverable = [c for c in cases if c.deliverable]
    assert all(c.deliverable for c in cases if c.expected is None)
    assert {c.expected for c in deliverable} == {None, *RejectReason}
    last = max(c.received_at for c in cases)
    assert last - start < timedelta(seconds=15)
