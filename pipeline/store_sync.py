"""A read model fed from the dispatch stream: case events into another case store.

The dispatch worker's own store is its state. A second store (for example
PostgreSQL behind the review workbench, in the centre, while workers run on
SQLite) is kept from the dispatch topic: every case event is applied with
:meth:`CaseStore.apply`, which is idempotent (an event id once, a case only
forward in version), so at-least-once delivery, re-delivery after a crash
and replays from the start all end in the same contents. Offsets are
committed after each applied batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from core.kafka import client_kwargs
from pipeline.cloudevents import EnvelopeError, parse_case_event
from pipeline.config import DispatchServiceConfig
from pipeline.store import CaseStore, open_store

log = logging.getLogger("streetwatch.store_sync")


@dataclass
class SyncStats:
    events: int = 0
    changed: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)


async def sync_store(
    cfg: DispatchServiceConfig,
    target_url: str,
    stop: asyncio.Event,
    group_id: str = "streetwatch-store-sync",
    stats: SyncStats | None = None,
) -> SyncStats:
    """Apply the dispatch topic to the store at ``target_url`` until ``stop``."""
    stats = stats or SyncStats()
    store: CaseStore = open_store(target_url)
    consumer = AIOKafkaConsumer(
        cfg.kafka.dispatch_topic,
        **client_kwargs(cfg.kafka),
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            events = []
            for records in batches.values():
                for rec in records:
                    try:
                        events.append(parse_case_event(rec.value))
                    except EnvelopeError as exc:
                        # not ours to fix, and nothing to lose: count it, keep going
                        stats.unreadable[str(exc).split(":", 1)[0]] += 1
                        log.error(
                            "event=sync_unreadable partition=%d offset=%d reason=%s",
                            rec.partition,
                            rec.offset,
                            exc,
                        )
            if events:
                stats.changed += store.apply_many(events)
                stats.events += len(events)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        store.close()
    return stats
