"""Live case events for the workbench: the dispatch topic, read as it grows.

The feed starts its consumer at the end of every partition *before* loading
the open cases from the store, so an event committed in between is read
again rather than missed; the queue keeps the newest version of each case,
so reading one twice changes nothing. Each change goes to every connected
browser (server-sent events) whose user may see the case, and to the
suppression desk, which lifts a suppression when its place escalates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from centre.review.cards import Card, Queue
from core.kafka import KafkaConfig, client_kwargs
from core.records import Case, CaseEvent, CaseStatus
from pipeline.cloudevents import EnvelopeError, parse_case_event
from pipeline.store import CaseStore

log = logging.getLogger("streetwatch.review")

OPEN = tuple(s for s in CaseStatus if not s.terminal)
SUBSCRIBER_BACKLOG = 1000


@dataclass(frozen=True)
class Change:
    """One case change as the browsers hear of it."""

    case: Case
    event_type: str
    first: bool  # the queue had not held this case before

    def payload(self) -> dict[str, object]:
        return {
            "case_id": self.case.case_id,
            "version": self.case.version,
            "status": self.case.status.value,
            "terminal": self.case.status.terminal,
            "type": self.event_type,
            "new": self.first,
        }


class Subscriber:
    """One connected browser: its user's grids and a bounded queue of changes."""

    def __init__(self, grids: tuple[str, ...]) -> None:
        self.grids = frozenset(grids)
        self.changes: asyncio.Queue[Change] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self.dropped = False

    def wants(self, card_grids: tuple[str, ...]) -> bool:
        return not self.grids or not self.grids.isdisjoint(card_grids)


class Hub:
    """The queue read model plus the browsers listening to it."""

    def __init__(self) -> None:
        self.queue = Queue()
        self.subscribers: set[Subscriber] = set()
        self.events_seen = 0
        self.unreadable = 0
        self.listeners: list[Callable[[Case], None]] = []

    def subscribe(self, grids: tuple[str, ...]) -> Subscriber:
        sub = Subscriber(grids)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def apply(self, event: CaseEvent) -> None:
        self.events_seen += 1
        first = event.case_id not in self.queue.versions
        if not self.queue.apply(event.case):
            return
        change = Change(event.case, event.type.value, first)
        grids = Card.of(event.case).grids
        for sub in list(self.subscribers):
            if not sub.wants(grids):
                continue
            try:
                sub.changes.put_nowait(change)
            except asyncio.QueueFull:  # a browser that stopped reading: it reconnects and reloads
                self.subscribers.discard(sub)
                sub.dropped = True
        for listener in self.listeners:
            try:
                listener(event.case)
            except Exception:  # a listener's bug must not stop the feed
                log.exception("event=listener_failed case=%s", event.case_id)


class DispatchFeed:
    """Fills ``hub`` from the store, then from the dispatch topic, until stopped."""

    def __init__(self, kafka: KafkaConfig, store: CaseStore, hub: Hub) -> None:
        self.kafka = kafka
        self.store = store
        self.hub = hub
        self.ready = asyncio.Event()
        self.connected = False

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self._consume(stop)
                return
            except KafkaError as exc:
                self.connected = False
                log.warning("event=dispatch_feed_down error=%s retry_s=%.1f", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **client_kwargs(self.kafka), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            parts = await self._partitions(consumer)
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            for tp in parts:  # fix the positions before reading the store
                await consumer.position(tp)
            cases = await asyncio.to_thread(self.store.cases_with_status, OPEN)
            self.hub.queue.load(cases)
            self.connected = True
            self.ready.set()
            log.info("event=review_feed_ready open_cases=%d", len(self.hub.queue.cards))
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for rec in records:
                        if rec.value is None:
                            continue
                        try:
                            event = parse_case_event(rec.value)
                        except EnvelopeError as exc:
                            self.hub.unreadable += 1
                            log.error(
                                "event=unreadable_case_event partition=%d offset=%d error=%s",
                                rec.partition,
                                rec.offset,
                                exc,
                            )
                            continue
                        self.hub.apply(event)
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.kafka.dispatch_topic
        for _ in range(100):
            numbers = consumer.partitions_for_topic(topic)
            if numbers:
                return [TopicPartition(topic, p) for p in sorted(numbers)]
            await consumer.topics()  # refreshes the metadata
            await asyncio.sleep(0.2)
        raise KafkaError(f"topic {topic} has no partitions")
