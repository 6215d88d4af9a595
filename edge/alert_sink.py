"""Where alerts go: the ``AlertSink`` interface and its Kafka implementation.

The Kafka sink keys each alert by its place, so every alert about one place
lands on one partition and is folded in order by one dispatch worker.
``publish`` returns only once the broker has acknowledged the alert
(``acks="all"``); while the broker is unreachable it keeps retrying with
backoff, holding the caller back rather than dropping the alert.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka.errors import KafkaError

from core.kafka import KafkaConfig, reliable_producer, start_producer
from core.records import Alert
from core.sites import SiteMap

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    async def start(self) -> None: ...

    async def publish(self, alert: Alert) -> None: ...

    async def stop(self) -> None: ...


class KafkaAlertSink:
    """Publishes alerts keyed by site, so one site's alerts share a partition."""

    def __init__(self, cfg: KafkaConfig, sites: SiteMap | None = None) -> None:
        self.cfg = cfg
        self.sites = sites or SiteMap(())
        self.producer = reliable_producer(cfg.bootstrap)
        self.sent = 0

    async def start(self) -> None:
        await start_producer(self.producer, self.cfg.bootstrap)

    async def publish(self, alert: Alert) -> None:
        delay = 0.5
        while True:
            try:
                await self.producer.send_and_wait(
                    self.cfg.alerts_topic,
                    value=alert.to_json_bytes(),
                    key=self.sites.site_of(alert.place).encode("utf-8"),
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
    """Passes alerts to another sink and remembers the alerts it published, by id.

    Lets a supervisor (the demo, tests) tell when every alert it sent has
    reached the dispatch topic. Unbounded: not for long-running workers.
    """

    inner: AlertSink
    published: dict[str, Alert] = field(default_factory=dict)

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, alert: Alert) -> None:
        await self.inner.publish(alert)
        self.published[alert.alert_id] = alert

    async def stop(self) -> None:
        await self.inner.stop()
