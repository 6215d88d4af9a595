"""Kafka plumbing shared by the edge's producers: topic creation and producer start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


def reliable_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (``acks="all"``)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=15000
    )


async def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int, attempts: int = 30
) -> None:
    """Create those of ``names`` that do not exist yet, retrying while the broker starts."""
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(name, num_partitions=partitions, replication_factor=1)
                for name in names
                if name not in existing
            ]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                    await admin.create_topics(wanted)
            return
        except KafkaError as exc:
            if attempt == attempts:
                raise
            log.warning("kafka %s not ready (%s), retrying", bootstrap, exc)
            await asyncio.sleep(min(5.0, 0.2 * attempt))
        finally:
            await admin.close()


async def start_producer(producer: AIOKafkaProducer, bootstrap: str) -> None:
    """Start ``producer``, retrying with backoff (up to 30 s apart) until the broker answers."""
    delay = 0.5
    while True:
        try:
            await producer.start()
            return
        except KafkaError as exc:
            log.warning("kafka %s unreachable (%s); retrying in %.1fs", bootstrap, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
