"""Where alerts go: the ``AlertSink`` interface and its Kafka implementation.

The Kafka sink keys each alert by its place, so every alert about one place
lands on one partition and is folded in order by one dispatch worker.
``publish`` returns only once the broker has acknowledged the alert
(``acks="all"``); while the broker is unreachable it keeps retrying with
backoff, holding the caller back rather than dropping the alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streetwatch.config import KafkaConfig
from streetwatch.records import Alert

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    async def start(self) -> None: ...

    async def publish(self, alert: Alert) -> None: ...

    async def stop(self) -> None: ...


async def ensure_topics(cfg: KafkaConfig, attempts: int = 30) -> None:
    """Create the alerts and dispatch topics if they do not exist yet."""
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(bootstrap_servers=cfg.bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(name, num_partitions=cfg.partitions, replication_factor=1)
                for name in (cfg.alerts_topic, cfg.dispatch_topic)
                if name not in existing
            ]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                    await admin.create_topics(wanted)
            return
        except KafkaError as exc:
            if attempt == attempts:
                raise
            log.warning("kafka %s not ready (%s), retrying", cfg.bootstrap, exc)
            await asyncio.sleep(min(5.0, 0.2 * attempt))
        finally:
            await admin.close()


class KafkaAlertSink:
    def __init__(self, cfg: KafkaConfig) -> None:
        self.cfg = cfg
        self.producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=15000,
        )
        self.sent = 0

    async def start(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.producer.start()
                return
            except KafkaError as exc:
                log.warning(
                    "kafka %s unreachable (%s); retrying in %.1fs", self.cfg.bootstrap, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def publish(self, alert: Alert) -> None:
        delay = 0.5
        while True:
            try:
                await self.producer.send_and_wait(
                    self.cfg.alerts_topic,
                    value=alert.to_json_bytes(),
                    key=alert.place.place_id.encode("utf-8"),
                )
                self.sent += 1
                return
            except KafkaError as exc:
                log.warning(
                    "alert %s not acknowledged (%s); retrying in %.1fs", alert.alert_id, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        await self.producer.stop()


@dataclass
class RecordingSink:
    """Passes alerts to another sink and remembers the ids it published.

    Lets a supervisor (the demo, tests) tell when every alert it sent has
    reached the dispatch topic. Unbounded: not for long-running workers.
    """

    inner: AlertSink
    published: set[str] = field(default_factory=set)

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, alert: Alert) -> None:
        await self.inner.publish(alert)
        self.published.add(alert.alert_id)

    async def stop(self) -> None:
        await self.inner.stop()
