"""Kafka helpers for tests: a topic collector and a dispatch worker in a child process."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from core.kafka import KafkaConfig
from core.records import Alert, Case, CaseEvent
from pipeline.case_engine import COALESCED
from pipeline.cloudevents import parse_case_event
from pipeline.config import DISPATCH_SECTIONS, DispatchServiceConfig
from pipeline.dedup import shows
from streetwatch.processes import Child
from tests.support.polling import until


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
        """Until an event caused by each of ``alert_ids`` (alert or update ids) is here."""
        await until(
            lambda: alert_ids <= {e.cause_id for e in self.events()},
            f"events caused by {len(alert_ids)} alerts or updates",
            timeout,
            interval=0.2,  # every poll parses the whole topic
        )

    def cases(self) -> dict[str, Case]:
        """The newest version seen of each case."""
        return {cid: e.case for cid, e in latest(self.events()).items()}

    async def wait_for_alerts(self, alerts: Iterable[Alert], timeout: float = 90) -> None:
        """Until every alert is in a published case (held ones come out later)."""
        pending = list(alerts)

        def all_shown() -> bool:
            nonlocal pending
            cases = self.cases().values()
            pending = [a for a in pending if not any(shows(c, a) for c in cases)]
            return not pending

        await until(all_shown, "every alert in a published case", timeout, interval=0.2)

    async def wait_for_counts(self, cases: int, alerts_each: int, timeout: float = 90) -> None:
        """Until ``cases`` cases were published with ``alerts_each`` alerts folded in each
        (held changes come out with the next change or after ``[dedup] coalesce_s``)."""

        def published() -> bool:
            shown = self.cases().values()
            return len(shown) >= cases and all(c.alert_count >= alerts_each for c in shown)

        await until(published, f"{cases} cases of {alerts_each} alerts each", timeout, interval=0.2)


def assert_same_cases(first: Iterable[CaseEvent], again: Iterable[CaseEvent]) -> None:
    """Two runs over one alert stream made the same cases.

    The news (every event not publishing held changes) are the same events; held
    versions may come out in one run and not the other, but an event id that both
    published has one content; and every case ends the same.
    """
    runs = [{e.event_id: e for e in first}, {e.event_id: e for e in again}]
    news = [{i: e.case for i, e in run.items() if e.cause_id != COALESCED} for run in runs]
    assert news[0] == news[1]
    shared = runs[0].keys() & runs[1].keys()
    assert all(runs[0][i].case == runs[1][i].case for i in shared)
    finals = [{cid: e.case for cid, e in latest(run.values()).items()} for run in runs]
    assert finals[0] == finals[1]


def latest(events: Iterable[CaseEvent]) -> dict[str, CaseEvent]:
    """The newest event of each case."""
    out: dict[str, CaseEvent] = {}
    for e in events:
        if e.case_id not in out or e.version > out[e.case_id].version:
            out[e.case_id] = e
    return out


def fresh_kafka(bootstrap: str, partitions: int = 2) -> KafkaConfig:
    """A ``[kafka]`` section with topics of their own, for one test."""
    run = uuid.uuid4().hex[:8]
    return KafkaConfig(
        bootstrap=bootstrap,
        alerts_topic=f"alerts-{run}",
        dispatch_topic=f"dispatch-{run}",
        status_topic=f"status-{run}",
        dead_letter_topic=f"dead-{run}",
        sensor_dead_letter_topic=f"sensors-dead-{run}",
        suppression_topic=f"suppressions-{run}",
        partitions=partitions,
    )


def dispatch_worker(cfg: DispatchServiceConfig, tmp: Path, name: str) -> Child:
    """``streetwatch dispatch`` in a child process, from a file holding only the
    dispatch service's sections (as on a central machine: no cameras, no devices)."""
    path = tmp / f"{name}.json"
    path.write_text(cfg.model_dump_json(include=set(DISPATCH_SECTIONS)))
    return Child(
        name,
        [sys.executable, "-m", "streetwatch.cli", "dispatch", "--config", str(path)],
        log=tmp / f"{name}.log",
    )
