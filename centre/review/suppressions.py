"""Suppressions: what reviewers tell edge cameras to stop reporting.

A rejection can make one (a mask drawn on the snapshot, classes muted at the
place, or hours muted), each with an expiry. The workbench keeps them in its
database and publishes, per camera, the whole set in force as one
:class:`~core.records.CameraSuppressions` message on the compacted
suppression topic, keyed by camera id: the latest message per camera is the
truth an edge box applies without a restart.

Delivery: a change is first written to the database with the camera marked
unpublished, then published with ``acks="all"``; only then is the camera
marked published. A failed publish is retried by :meth:`SuppressionDesk.run`
every few seconds until the broker has it, so a suppression (or its lifting)
is never silently lost. Expired suppressions drop out of the next message;
the edge also checks each expiry itself.

A suppression lifts itself early when its place escalates: a later case at
the same place that is urgent (``[review] escalate_urgency``) or corroborated
by a sensor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from centre.review.db import WorkbenchDb
from core.kafka import KafkaConfig
from core.records import CameraSuppressions, Case, Suppression

log = logging.getLogger("streetwatch.review")

RETRY_S = 2.0


def escalates(case: Case, s: Suppression, urgent: int) -> bool:
    """Whether ``case`` at the suppression's place should lift ``s`` early."""
    if case.case_id == s.case_id or case.status.terminal or s.place_id not in case.place_ids:
        return False
    sensor = any(key.startswith("sensor:") for key in case.sources)
    return (case.route is not None and case.route.urgency <= urgent) or sensor


class SuppressionDesk:
    def __init__(
        self,
        db: WorkbenchDb,
        kafka: KafkaConfig,
        producer: Callable[[], AIOKafkaProducer | None],
        escalate_urgency: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.kafka = kafka
        self.producer = producer
        self.escalate_urgency = escalate_urgency
        self.clock = clock
        self.wake = asyncio.Event()
        self.lifted_early = 0
        self.publish_failures = 0
        self._tasks: set[asyncio.Task[bool]] = set()

    async def add(self, s: Suppression) -> bool:
        """Keep ``s`` and publish its camera's set; whether the broker has it already."""
        if not await asyncio.to_thread(self.db.add_suppression, s):
            return True  # a repeat: kept (and published or queued) the first time
        revision = await asyncio.to_thread(self.db.changed, s.camera_id)
        log.info(
            "event=suppression_added id=%s camera=%s kind=%s place=%s by=%s expires=%s",
            s.suppression_id,
            s.camera_id,
            s.kind,
            s.place_id,
            s.created_by,
            s.expires_at.isoformat(),
        )
        return await self._publish(s.camera_id, revision)

    async def lift(self, suppression_id: str, by: str, why: str) -> bool:
        camera = await asyncio.to_thread(self.db.lift, suppression_id, by, why, self.clock())
        if camera is None:
            return False
        log.info(
            "event=suppression_lifted id=%s camera=%s by=%s why=%s", suppression_id, camera, by, why
        )
        revision = await asyncio.to_thread(self.db.changed, camera)
        await self._publish(camera, revision)
        return True

    def on_case(self, case: Case) -> None:
        """A case changed (from the dispatch topic): lift what its escalation ends."""
        for s in self.db.live_at_places(case.place_ids, self.clock()):
            if escalates(case, s, self.escalate_urgency):
                self.lifted_early += 1
                task = asyncio.get_running_loop().create_task(
                    self.lift(s.suppression_id, "streetwatch", f"escalated:{case.case_id}")
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _publish(self, camera_id: str, revision: int) -> bool:
        producer = self.producer()
        if producer is None:
            self.wake.set()
            return False
        now = self.clock()
        live = await asyncio.to_thread(self.db.live_for_camera, camera_id, now)
        message = CameraSuppressions(
            camera_id=camera_id, revision=revision, published_at=now, suppressions=tuple(live)
        )
        try:
            await producer.send_and_wait(
                self.kafka.suppression_topic,
                value=message.to_json_bytes(),
                key=camera_id.encode("utf-8"),
            )
        except KafkaError as exc:
            self.publish_failures += 1
            log.warning("event=suppressions_unpublished camera=%s error=%s", camera_id, exc)
            self.wake.set()
            return False
        await asyncio.to_thread(self.db.published, camera_id, revision)
        log.info(
            "event=suppressions_published camera=%s revision=%d live=%d",
            camera_id,
            revision,
            len(live),
        )
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Publish what is unpublished, and re-publish cameras whose suppressions
        expired (so the topic's latest message drops them), until ``stop``."""
        live_before: dict[str, str] = {}
        while not stop.is_set():
            now = self.clock()
            live_now = await asyncio.to_thread(self.db.live_ids, now)
            for camera in {c for s, c in live_before.items() if s not in live_now}:
                await asyncio.to_thread(self.db.changed, camera)  # one expired
            live_before = live_now
            for camera, revision in (await asyncio.to_thread(self.db.unpublished)).items():
                await self._publish(camera, revision)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), RETRY_S)
