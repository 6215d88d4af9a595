"""Kafka helpers for tests: a topic collector and a dispatch worker in a child process."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from pipeline.cloudevents import parse_case_event
from streetwatch.config import Config, KafkaConfig
from streetwatch.processes import Child
from streetwatch.records import CaseEvent


class Topic:
    """Collects every message on a topic from the start, in the background."""

    def __init__(self, kafka: KafkaConfig, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=f"t-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.messages: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Topic:
        await self.consumer.start()
        self.task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    async def _collect(self) -> None:
        async for rec in self.consumer:
            self.messages.append(rec.value)

    def events(self) -> list[CaseEvent]:
        return [parse_case_event(m) for m in self.messages]

    async def wait_for(self, alert_ids: set[str], timeout: float = 90) -> None:
        async def seen() -> None:
            while not alert_ids <= {e.cause_id for e in self.events()}:
                await asyncio.sleep(0.2)

        await asyncio.wait_for(seen(), timeout)


def dispatch_worker(cfg: Config, tmp: Path, name: str) -> Child:
    path = tmp / f"{name}.json"
    path.write_text(cfg.model_dump_json())
    return Child(
        name,
        [sys.executable, "-m", "streetwatch.cli", "dispatch", "--config", str(path)],
        log=tmp / f"{name}.log",
    )
