"""Publishing status updates on the status topic (for the CLI, the demo and tests).

The topic is created with the others (:func:`core.kafka.ensure_topics`).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.kafka import KafkaConfig, reliable_producer, start_producer
from core.records import StatusUpdate


async def publish_updates(cfg: KafkaConfig, updates: Sequence[StatusUpdate]) -> None:
    """Send updates keyed by case id and wait until the broker has them."""
    producer = reliable_producer(cfg)
    await start_producer(producer, cfg.bootstrap)
    try:
        for u in updates:
            await producer.send_and_wait(
                cfg.status_topic, value=u.to_json_bytes(), key=u.case_id.encode("utf-8")
            )
    finally:
        await producer.stop()
