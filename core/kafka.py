"""Kafka plumbing shared by every producer and consumer: the ``[kafka]`` section,
topic creation (in this one place) and producer start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import Field, field_validator

from core.config import Section

log = logging.getLogger(__name__)

TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


class KafkaConfig(Section):
    """The Kafka-API broker that carries alerts and case events."""

    bootstrap: str = Field(
        default="127.0.0.1:9092", description="host:port of a broker (several: comma-separated)"
    )
    alerts_topic: str = Field(
        default="streetwatch.alerts", description="Edge -> dispatch worker, keyed by place"
    )
    dispatch_topic: str = Field(
        default="streetwatch.dispatch",
        description="Case events for the dispatch system, keyed by case id",
    )
    dead_letter_topic: str = Field(
        default="streetwatch.alerts.dead", description="Alerts the dispatch worker cannot read"
    )
    status_topic: str = Field(
        default="streetwatch.case-status",
        description="Status updates from the dispatch system (StatusUpdate JSON)",
    )
    sensor_dead_letter_topic: str = Field(
        default="streetwatch.sensors.dead",
        description="Sensor messages the edge cannot use, with the reason, keyed by reason",
    )
    suppression_topic: str = Field(
        default="streetwatch.suppressions",
        description="Suppressions for edge cameras from the review workbench "
        "(CameraSuppressions JSON, keyed by camera id, compacted)",
    )
    partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the topics streetwatch creates"
    )

    @field_validator("bootstrap")
    @classmethod
    def _host_ports(cls, v: str) -> str:
        for server in v.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"'{server.strip()}' is not host:port")
        return v

    @field_validator(
        "alerts_topic",
        "dispatch_topic",
        "dead_letter_topic",
        "status_topic",
        "sensor_dead_letter_topic",
        "suppression_topic",
    )
    @classmethod
    def _topic_name(cls, v: str) -> str:
        if not TOPIC_NAME.fullmatch(v):
            raise ValueError(f"'{v}' is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")
        return v


def reliable_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (``acks="all"``)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=15000
    )


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    attempts: int = 30,
    configs: dict[str, str] | None = None,
) -> None:
    """Create those of ``names`` that do not exist yet, retrying while the broker starts.

    ``configs`` are topic settings given to each new topic (e.g. ``cleanup.policy``).
    """
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=dict(configs or {}),
                )
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


async def ensure_topics(cfg: KafkaConfig, attempts: int = 30) -> None:
    """Create the alerts, dispatch, status and suppression topics if they do not exist yet.

    The suppression topic is compacted: the latest message per camera is what counts.
    """
    await create_topics(
        cfg.bootstrap,
        (cfg.alerts_topic, cfg.dispatch_topic, cfg.status_topic),
        cfg.partitions,
        attempts,
    )
    await create_topics(
        cfg.bootstrap,
        (cfg.suppression_topic,),
        cfg.partitions,
        attempts,
        configs={"cleanup.policy": "compact"},
    )
