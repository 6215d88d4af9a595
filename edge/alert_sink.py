"""Where alerts go: the ``AlertSink`` interface and its Kafka implementation.

The Kafka sink keys each alert by its site, so every alert about one place
lands on one partition and is folded in order by one dispatch worker.
``publish`` returns only once the broker has acknowledged every alert it
was given (``acks="all"``) and raises otherwise; the edge outbox's forwarder
(:mod:`edge.outbox`) keeps the alerts and sends them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.kafka import KafkaConfig, reliable_producer, start_producer
from core.records import Alert
from core.sites import SiteMap

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    async def start(self) -> None: ...

    async def publish(self, alerts: Sequence[Alert]) -> None:
        """Return once every alert is acknowledged, in order; raise otherwise."""
        ...

    async def stop(self) -> None: ...


class KafkaAlertSink:
    """Publishes alerts keyed by site, so one site's alerts share a partition."""

    def __init__(self, cfg: KafkaConfig, sites: SiteMap | None = None) -> None:
        self.cfg = cfg
        self.sites = sites or SiteMap(())
        self.producer = reliable_producer(cfg)
        self.sent = 0

    async def start(self) -> None:
        await start_producer(self.producer, self.cfg.bootstrap)

    async def publish(self, alerts: Sequence[Alert]) -> None:
        futures = [
            await self.producer.send(
                self.cfg.alerts_topic,
                value=alert.to_json_bytes(),
                key=self.sites.site_of(alert.place).encode("utf-8"),
            )
            for alert in alerts
        ]
        await asyncio.gather(*futures)  # a KafkaError (a timeout, say) goes to the caller
        self.sent += len(alerts)

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

    async def publish(self, alerts: Sequence[Alert]) -> None:
        await self.inner.publish(alerts)
        for alert in alerts:
            self.published[alert.alert_id] = alert

    async def stop(self) -> None:
        await self.inner.stop()
