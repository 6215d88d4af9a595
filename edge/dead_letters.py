"""Dead letters: every rejected sensor message, counted per reason and kept.

:class:`DeadLetters` turns a rejected message (topic, payload, the
:class:`~ingest.sensor_payload.BadReading` and when it arrived) into a
:class:`~core.records.DeadLetter` record, counts it under its reason
and hands it to a sink. :class:`KafkaDeadLetterSink` publishes letters to a
dead-letter topic, keyed by the message's topic, with ``acks="all"``; like
the alert sink it retries with backoff while the broker is unreachable, but
it does not wait for each acknowledgement before taking the next letter
(a bounded number wait; ``flush``/``stop`` wait for all).
:class:`MemoryDeadLetterSink` keeps them in a list, for tests.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aiokafka.errors import KafkaError

from core.kafka import KafkaConfig, create_topics, reliable_producer, start_producer
from core.records import DeadLetter
from ingest.sensor_payload import BadReading

log = logging.getLogger(__name__)

PAYLOAD_KEPT = 4096  # bytes of the payload kept in the letter
TOPIC_KEPT = 256  # characters of the topic kept in the letter
DETAIL_KEPT = 500  # characters of the detail


class DeadLetterSink(Protocol):
    async def start(self) -> None: ...

    async def send(self, letter: DeadLetter) -> None: ...

    async def flush(self) -> None:
        """Return once every letter sent so far is acknowledged."""
        ...

    async def stop(self) -> None: ...


def _printable(text: str, limit: int) -> str:
    """Text that is safe to serialise (lone surrogates escaped), at most ``limit`` characters."""
    text = text[:limit]
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


class DeadLetters:
    """Makes, counts and sends dead letters for one edge box."""

    def __init__(self, box_id: str, sink: DeadLetterSink, source: str = "mqtt") -> None:
        self.box_id = box_id
        self.sink = sink
        self.source = source
        self.counts: Counter[str] = Counter()
        self.sent = 0

    def letter(
        self, topic: str, payload: bytes, bad: BadReading, received_at: datetime
    ) -> DeadLetter:
        """The letter for one rejected message; counts it under its reason."""
        topic_kept = _printable(topic, TOPIC_KEPT)
        letter = DeadLetter(
            letter_id=DeadLetter.make_id(self.box_id, topic_kept, payload, received_at),
            box_id=self.box_id,
            source=self.source,
            topic=topic_kept,
            reason=bad.reason.value,
            detail=_printable(bad.detail, DETAIL_KEPT),
            payload_size=len(payload),
            payload_b64=base64.b64encode(payload[:PAYLOAD_KEPT]).decode("ascii"),
            received_at=received_at,
        )
        self.counts[letter.reason] += 1
        return letter

    async def reject(
        self, topic: str, payload: bytes, bad: BadReading, received_at: datetime
    ) -> DeadLetter:
        """Make the letter, count it and send it; returns once the sink has it."""
        letter = self.letter(topic, payload, bad, received_at)
        await self.sink.send(letter)
        self.sent += 1
        return letter


async def ensure_topic(
    kafka: KafkaConfig, topic: str, partitions: int = 1, attempts: int = 30
) -> None:
    """Create the dead-letter topic if it does not exist yet."""
    await create_topics(kafka, (topic,), partitions, attempts)


class KafkaDeadLetterSink:
    """Publishes dead letters to ``topic`` (created on start), keyed by the message topic.

    ``send`` returns once the letter is queued in the producer, so a burst of
    bad input does not wait a broker round trip per message; at most
    ``max_pending`` letters wait for their acknowledgement (``acks="all"``)
    before ``send`` holds the caller back. A letter the broker refused is
    sent again, with backoff, until it is acknowledged. ``flush`` (and
    ``stop``) return once every letter sent so far is acknowledged.
    """

    def __init__(
        self, kafka: KafkaConfig, topic: str, partitions: int = 1, max_pending: int = 1000
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.partitions = partitions
        self.max_pending = max_pending
        self.producer = reliable_producer(kafka)
        self.sent = 0  # acknowledged by the broker
        self._pending: deque[tuple[DeadLetter, asyncio.Future[object]]] = deque()

    async def start(self) -> None:
        await ensure_topic(self.kafka, self.topic, self.partitions)
        await start_producer(self.producer, self.kafka.bootstrap)

    async def send(self, letter: DeadLetter) -> None:
        while self._pending and (
            self._pending[0][1].done() or len(self._pending) >= self.max_pending
        ):
            await self._settle_oldest()
        self._pending.append((letter, await self._enqueue(letter)))

    async def flush(self) -> None:
        while self._pending:
            await self._settle_oldest()

    async def stop(self) -> None:
        try:
            await self.flush()
        finally:
            await self.producer.stop()

    async def _enqueue(self, letter: DeadLetter) -> asyncio.Future[object]:
        delay = 0.5
        while True:
            try:
                future: asyncio.Future[object] = await self.producer.send(
                    self.topic,
                    value=letter.to_json_bytes(),
                    key=letter.topic.encode("utf-8"),
                )
                return future
            except KafkaError as exc:
                log.warning(
                    "dead letter %s not queued (%s); retrying in %.1fs",
                    letter.letter_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _settle_oldest(self) -> None:
        letter, future = self._pending.popleft()
        delay = 0.5
        while True:
            try:
                await future
                self.sent += 1
                return
            except KafkaError as exc:
                log.warning(
                    "dead letter %s not acknowledged (%s); retrying in %.1fs",
                    letter.letter_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                future = await self._enqueue(letter)


@dataclass
class MemoryDeadLetterSink:
    """Keeps every letter in a list. Unbounded: for tests."""

    letters: list[DeadLetter] = field(default_factory=list)
    started: bool = False

    async def start(self) -> None:
        self.started = True

    async def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def flush(self) -> None:
        return None

    async def stop(self) -> None:
        self.started = False

    def reasons(self) -> Counter[str]:
        return Counter(letter.reason for letter in self.letters)
