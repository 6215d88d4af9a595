"""Dead letters: one per rejected message, counted per reason, on a real Kafka topic."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer

from core.kafka import KafkaConfig
from core.records import DeadLetter
from edge.dead_letters import DeadLetters, KafkaDeadLetterSink, MemoryDeadLetterSink
from ingest.sensor_payload import BadReading, RejectReason
from streetwatch.brokers import RunningBroker
from tests.support.factories import at
from tests.support.fuzz_payloads import FuzzCase, fuzz_cases, fuzz_checks, fuzz_parser
from tests.support.wire import assert_valid


async def run_corpus(dead: DeadLetters, cases: list[FuzzCase]) -> int:
    """What the ingest does with each message: parse, check, or dead-letter it."""
    parser, checks = fuzz_parser(), fuzz_checks()
    accepted = 0
    for case in cases:
        try:
            checks.check(parser.parse(case.topic, case.payload, case.received_at))
            accepted += 1
        except BadReading as bad:
            await dead.reject(case.topic, case.payload, bad, case.received_at)
    return accepted


async def test_letter_keeps_reason_detail_and_payload() -> None:
    sink = MemoryDeadLetterSink()
    dead = DeadLetters("box-1", sink)
    bad = BadReading(RejectReason.NOT_JSON, "Expecting value: line 1 column 1 (char 0)")
    letter = await dead.reject("neuron/t/smoke/sm-1/up", b"{oops", bad, at(3))
    assert sink.letters == [letter]
    assert (letter.box_id, letter.source, letter.topic) == (
        "box-1",
        "mqtt",
        "neuron/t/smoke/sm-1/up",
    )
    assert (letter.reason, letter.detail, letter.payload_size) == ("not_json", bad.detail, 5)
    assert base64.b64decode(letter.payload_b64) == b"{oops"
    assert letter.letter_id == DeadLetter.make_id("box-1", letter.topic, b"{oops", at(3))
    assert_valid("dead_letter", letter.to_json_bytes())
    assert dead.counts == Counter({"not_json": 1}) and dead.sent == 1


async def test_big_payloads_and_odd_topics_are_cut_and_still_serialise() -> None:
    dead = DeadLetters("box-1", MemoryDeadLetterSink())
    payload = bytes(range(256)) * 400
    bad = BadReading(RejectReason.OVERSIZED, "x" * 5000)
    letter = dead.letter("neuron/\ud800/" + "t" * 1000, payload, bad, at(0))
    assert letter.payload_size == len(payload)
    assert base64.b64decode(letter.payload_b64) == payload[:4096]
    assert len(letter.topic) <= 256 and letter.topic.startswith("neuron/\\ud800/")
    assert len(letter.detail) <= 500
    assert_valid("dead_letter", letter.to_json_bytes())
    assert DeadLetter.model_validate_json(letter.to_json_bytes()) == letter


async def test_fuzz_corpus_every_bad_message_is_one_letter_with_its_reason() -> None:
    cases = fuzz_cases()
    sink = MemoryDeadLetterSink()
    dead = DeadLetters("box-1", sink)
    accepted = await run_corpus(dead, cases)
    expected = Counter(c.expected.value for c in cases if c.expected is not None)
    assert accepted == sum(c.expected is None for c in cases)
    assert dead.counts == expected == sink.reasons()
    assert [letter.reason for letter in sink.letters] == [
        c.expected.value for c in cases if c.expected is not None
    ]
    for letter in sink.letters[::25]:
        assert_valid("dead_letter", letter.to_json_bytes())


@pytest.mark.integration
async def test_kafka_sink_publishes_every_letter(tansu: RunningBroker) -> None:
    topic = f"streetwatch.sensors.dead-{uuid.uuid4().hex[:6]}"
    cases = fuzz_cases(bad=600, valid=100)
    sink = KafkaDeadLetterSink(KafkaConfig(bootstrap=tansu.address), topic)
    await sink.start()
    dead = DeadLetters("box-1", sink)
    try:
        await run_corpus(dead, cases)
    finally:
        await sink.stop()
    assert sink.sent == 600 == dead.sent

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=tansu.address,
        group_id=f"t-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:

        async def collect() -> None:
            async for rec in consumer:
                assert_valid("dead_letter", rec.value)
                letters.append(DeadLetter.model_validate_json(rec.value))
                assert rec.key == letters[-1].topic.encode("utf-8")
                if len(letters) == 600:
                    return

        await asyncio.wait_for(collect(), 60)
    finally:
        await consumer.stop()
    assert Counter(letter.reason for letter in letters) == dead.counts
    assert len({letter.letter_id for letter in letters}) == 600
