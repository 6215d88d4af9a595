"""The dispatch worker's alert intake on a real Tansu broker: batches, retries, rebalances."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from core.kafka import KafkaConfig, create_topics
from pipeline.alert_intake import AlertIntake, Records
from streetwatch.brokers import RunningBroker
from tests.support.polling import until

pytestmark = pytest.mark.integration


async def write(bootstrap: str, topic: str, n: int, start: int = 0) -> list[bytes]:
    values = [f"alert-{i:03d}".encode() for i in range(start, start + n)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, v in enumerate(values):
            await producer.send(topic, v, key=f"site-{i % 7}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    return values


async def refuse_poison(record: ConsumerRecord[bytes, bytes], exc: BaseException) -> None:
    raise AssertionError(f"no alert should be poisoned here: {record.value!r} ({exc})")


def intake(
    bootstrap: str,
    topic: str,
    group: str,
    handle: Any,
    lock: asyncio.Lock,
    revoked: Any,
    on_poison: Any = None,
) -> AlertIntake:
    return AlertIntake(
        kafka=KafkaConfig(bootstrap=bootstrap),
        topic=topic,
        group=group,
        session_timeout_s=6.0,
        max_records=20,
        handle=handle,
        lock=lock,
        on_revoked=revoked,
        retryable=lambda exc: isinstance(exc, ConnectionError),
        on_poison=on_poison or refuse_poison,
    )


async def committed(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    """The sum of the group's committed offsets (= records handled and committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


async def test_a_failed_batch_is_read_again_and_nothing_is_lost(tansu: RunningBroker) -> None:
    b, topic, group = tansu.address, f"alerts-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await create_topics(KafkaConfig(bootstrap=b), [topic], 3)
    values = await write(b, topic, 100)
    handled: list[bytes] = []
    calls = 0

    async def handle(records: Records) -> None:
        nonlocal calls
        calls += 1
        if calls in (2, 3):  # the store is down for a while
            raise ConnectionError("case store unreachable")
        handled.extend(r.value for r in records)

    service = intake(b, topic, group, handle, asyncio.Lock(), lambda: None)
    await service.start()
    try:
        await until(lambda: len(set(handled)) == len(values), "every alert handled", timeout=60)
        await until(lambda: service.failures == 2, "the two failed batches", timeout=60)
    finally:
        await service.stop()
    assert sorted(set(handled)) == values, "every alert handled"
    assert len(handled) == len(values), "handled once each: the failed batches were not"
    assert await committed(b, topic, group, 3) == len(values), "and every offset committed"


class WatchedLock(asyncio.Lock):
    """Notes when someone waits for it while it is held."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.contended.set()
        return await super().acquire()


async def test_a_rebalance_waits_for_the_batch_in_hand(tansu: RunningBroker) -> None:
    b, topic, group = tansu.address, f"alerts-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await create_topics(KafkaConfig(bootstrap=b), [topic], 4)
    log: list[str] = []
    first_batch = asyncio.Event()
    release = asyncio.Event()
    first: list[bytes] = []
    by_one: list[bytes] = []
    by_two: list[bytes] = []

    async def slow(records: Records) -> None:
        if first:
            by_one.extend(r.value for r in records)
            return
        first.extend(r.value for r in records)
        log.append("batch start")
        first_batch.set()
        await release.wait()  # a long fold: the second worker joins meanwhile
        log.append("batch end")

    async def quick(records: Records) -> None:
        by_two.extend(r.value for r in records)

    lock = WatchedLock()
    one = intake(b, topic, group, slow, lock, lambda: log.append("revoked"))
    two = intake(b, topic, group, quick, asyncio.Lock(), lambda: None)
    await one.start()
    try:
        values = await write(b, topic, 40)
        await asyncio.wait_for(first_batch.wait(), 30)
        await two.start()  # joining makes the group take partitions from the first
        # the revocation comes at the first worker's next heartbeat, and waits
        await asyncio.wait_for(lock.contended.wait(), 30)
        await asyncio.sleep(0.3)
        assert log == ["batch start"], "revocation waits while the batch is folded"
        release.set()
        await until(lambda: "revoked" in log, "the revocation", timeout=60)
        assert log == ["batch start", "batch end", "revoked"]

        # the batch's offsets were committed before the partitions moved: their
        # next owner starts after it
        values += await write(b, topic, 40, start=40)
        await until(
            lambda: set(first + by_one + by_two) == set(values), "every value handled", timeout=60
        )
        assert by_two, "the second worker took partitions"
        assert not set(first) & set(by_two)
    finally:
        release.set()
        await two.stop()
        await one.stop()


async def test_an_alert_that_fails_on_its_own_goes_to_the_dead_letters_and_the_rest_go_on(
    tansu: RunningBroker,
) -> None:
    """A bug that one alert trips must not stall its partitions: the batch is taken
    one alert at a time, the one that fails alone is handed over with its error, and
    every offset is committed; a retryable failure never poisons anything."""
    b, topic, group = tansu.address, f"alerts-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await create_topics(KafkaConfig(bootstrap=b), [topic], 3)
    values = await write(b, topic, 60)
    poison = b"alert-017"
    handled: list[bytes] = []
    dead: list[tuple[bytes, str]] = []
    store_down = 2  # the first two calls find the store unreachable

    async def handle(records: Records) -> None:
        nonlocal store_down
        if store_down:
            store_down -= 1
            raise ConnectionError("case store unreachable")
        if any(r.value == poison for r in records):
            raise ValueError("the engine trips on this alert")
        handled.extend(r.value for r in records)

    async def on_poison(record: ConsumerRecord[bytes, bytes], exc: BaseException) -> None:
        dead.append((record.value, f"{type(exc).__name__}: {exc}"))

    service = intake(b, topic, group, handle, asyncio.Lock(), lambda: None, on_poison)
    await service.start()
    try:
        await until(lambda: len(handled) == len(values) - 1, "every other alert", timeout=60)
        await until(lambda: service.poisoned == 1, "the poisoned alert handed over", timeout=60)
    finally:
        await service.stop()
    assert dead == [(poison, "ValueError: the engine trips on this alert")]
    assert sorted(handled) == [v for v in values if v != poison], "the others once each"
    assert await committed(b, topic, group, 3) == len(values), "the partitions moved on"
