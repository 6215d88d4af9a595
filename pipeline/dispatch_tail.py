"""Reads case events from the dispatch topic, as the dispatch system would."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import tzinfo

from aiokafka import AIOKafkaConsumer

from core.kafka import KafkaConfig, client_kwargs
from core.records import CaseEvent
from core.timefmt import local_time
from pipeline.cloudevents import EnvelopeError, parse_case_event

log = logging.getLogger(__name__)


async def case_events(
    cfg: KafkaConfig, stop: asyncio.Event, group_id: str | None = None
) -> AsyncIterator[tuple[bytes, CaseEvent]]:
    """Yield (raw message, event) from the start of the dispatch topic until ``stop``."""
    consumer = AIOKafkaConsumer(
        cfg.dispatch_topic,
        **client_kwargs(cfg),
        group_id=group_id or f"streetwatch-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    try:
                        yield rec.value, parse_case_event(rec.value)
                    except EnvelopeError as exc:
                        log.error("unreadable case event at offset %d: %s", rec.offset, exc)
    finally:
        await consumer.stop()


def describe(event: CaseEvent, tz: tzinfo) -> str:
    """One line per event, times in ``tz`` (the town's zone, ``[sla] timezone``)."""
    c = event.case
    if c.evidence:
        latest = c.evidence[-1]
        evidence = f"evidence {latest.url or latest.path}"
    elif c.readings:
        r = c.readings[-1]
        shown = f"{r.value:g}{r.unit}" if r.value is not None else (r.state or "a message")
        evidence = f"reading {shown} from {r.device_id}"
    else:
        evidence = "no evidence"
    cleared = f"  cleared {local_time(c.cleared_at, tz)}" if c.cleared_at is not None else ""
    route = f"  -> {c.route.owner} (urgency {c.route.urgency})" if c.route else ""
    sla = f" {event.stage}" if event.stage else ""
    return (
        f"case {event.type:<14}{sla} v{event.version:<3} {c.case_id}  {c.category:<18} "
        f"@ {c.site_id} ({c.place.name})  {c.status}{route}  first {local_time(c.first_seen, tz)}  "
        f"last {local_time(c.last_seen, tz)}  count {c.alert_count}{cleared}  {evidence}"
    )
