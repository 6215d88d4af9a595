"""The dispatch worker's alert intake: the alerts topic, a whole fetch at a time.

A faust agent gets its messages one by one: for every message faust's
consumer starts a task pair and waits on it against its flow control, puts an
event through a channel and tracks its acknowledgement. On the dispatch
benchmark that costs more CPU than folding the alert: a faust agent that only
forwards its messages reaches about a quarter of the rate of a plain aiokafka
loop (``python -m bench.dispatch``). Alerts are the one input whose volume
matters, so the worker reads them with an aiokafka consumer of its own, run
as a service of the faust app, and hands each fetch to the case engine whole.
Status updates, the timer and the worker's life cycle stay with faust.

Delivery is at least once, like the agent's was:

- a batch's offsets are committed after the case engine committed the batch
  to the store (and the events are in the outbox); a crash in between
  re-delivers alerts that then change nothing;
- a batch that fails because something it needs is unavailable (the
  store unreachable, say: ``retryable``) is read again from its first
  offsets after a pause that doubles up to ``MAX_RETRY_S``: nothing is
  skipped;
- a batch that fails for any other reason (a bug that one alert trips) is
  taken again one alert at a time: an alert that fails on its own is handed
  to ``on_poison`` (the worker sends it to the dead letters with the reason,
  and waits for the broker's acknowledgement) and the partition moves on;
  an alert that fails as retryable there rewinds the batch as above;
- when a rebalance takes partitions away, the revocation waits until the
  batch in hand is folded and its offsets committed (the same lock), then
  the heads cached for them are dropped.

Several workers share the partitions in the consumer group
``<[dispatch] app_id>-alerts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError
from mode import Service

from core.kafka import KafkaConfig, client_kwargs

log = logging.getLogger("streetwatch.dispatch")

Records = Sequence[ConsumerRecord[bytes, bytes]]
Fetched = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
FETCH_TIMEOUT_MS = 1000
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


def intake_group(app_id: str) -> str:
    """The consumer group of the workers' alert intake."""
    return f"{app_id}-alerts"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: AlertIntake) -> None:
        self.intake = intake

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return  # the first join of this worker
        async with self.intake.lock:  # the batch in hand is finished and committed first
            self.intake.on_revoked()
        log.info("event=alerts_revoked partitions=%s", _names(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.intake.assignment = frozenset(assigned)
        log.info("event=alerts_assigned partitions=%s", _names(assigned))


def _names(tps: set[TopicPartition]) -> str:
    return ",".join(sorted(f"{tp.topic}:{tp.partition}" for tp in tps)) or "-"


class AlertIntake(Service):
    """Reads ``topic`` in the group ``group`` and hands each fetch to ``handle``.

    ``handle`` runs under ``lock`` (the worker's one read-fold-commit at a
    time), and the batch's offsets are committed under it too.
    """

    def __init__(
        self,
        *,
        kafka: KafkaConfig,
        topic: str,
        group: str,
        session_timeout_s: float,
        max_records: int,
        handle: Callable[[Records], Awaitable[None]],
        lock: asyncio.Lock,
        on_revoked: Callable[[], None],
        retryable: Callable[[BaseException], bool],
        on_poison: Callable[[ConsumerRecord[bytes, bytes], BaseException], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.topic, self.max_records = topic, max_records
        self.handle, self.lock, self.on_revoked = handle, lock, on_revoked
        self.retryable, self.on_poison = retryable, on_poison
        self._settings: dict[str, Any] = {
            **client_kwargs(kafka),
            "group_id": group,
            "client_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_records,
            "fetch_max_bytes": 8 * 1024 * 1024,
            "session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(max(1.0, session_timeout_s / 6) * 1000),
        }
        self.consumer: AIOKafkaConsumer | None = None
        self.batches = 0
        self.failures = 0
        self.poisoned = 0
        # the partitions the group gave this worker; None until it joined the group
        self.assignment: frozenset[TopicPartition] | None = None

    async def on_start(self) -> None:
        self.consumer = AIOKafkaConsumer(**self._settings)  # needs the running loop
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    @Service.task
    async def _intake(self) -> None:
        assert self.consumer is not None, "started in on_start"
        # subscribed here, not before the start: a start would wait for the group's
        # assignment, and with it the app's start
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        retry_s = FIRST_RETRY_S
        try:
            while not self.should_stop:
                fetched = await self.consumer.getmany(
                    timeout_ms=FETCH_TIMEOUT_MS, max_records=self.max_records
                )
                if not fetched:
                    continue
                if await self._take(fetched):
                    retry_s = FIRST_RETRY_S
                    continue
                await asyncio.sleep(retry_s)
                retry_s = min(MAX_RETRY_S, 2 * retry_s)
        except ConsumerStoppedError:
            return  # the worker is stopping

    async def _take(self, fetched: Fetched) -> bool:
        """Handle one fetch and commit its offsets; False when it must be read again."""
        assert self.consumer is not None
        records = [r for part in fetched.values() for r in part]
        async with self.lock:
            try:
                await self.handle(records)
            except ConsumerStoppedError:
                raise
            except Exception as exc:
                self.failures += 1
                if self.retryable(exc) or not await self._one_by_one(records, exc):
                    log.exception("event=alerts_failed records=%d (read again)", len(records))
                    self._rewind(fetched)
                    return False
            self.batches += 1
            # under the lock too: a revocation finds the batch in hand committed, and
            # the partition's next owner starts after it
            offsets = {tp: part[-1].offset + 1 for tp, part in fetched.items()}
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:  # no longer ours: the owner reads them again, to no effect
                log.warning("event=alerts_commit_failed records=%d error=%s", len(records), exc)
        return True

    async def _one_by_one(self, records: Records, exc: Exception) -> bool:
        """Handle ``records`` one at a time, each that fails on its own to ``on_poison``;
        False if one failed as retryable (the batch is read again)."""
        log.warning(
            "event=alerts_split records=%d error=%s: taking them one at a time",
            len(records),
            f"{type(exc).__name__}: {exc}",
        )
        for record in records:
            try:
                await self.handle([record])
            except ConsumerStoppedError:
                raise
            except Exception as alone:
                if self.retryable(alone):
                    return False
                log.error(
                    "event=alert_poisoned topic=%s partition=%d offset=%d error=%s",
                    record.topic,
                    record.partition,
                    record.offset,
                    f"{type(alone).__name__}: {alone}",
                )
                try:
                    await self.on_poison(record, alone)
                except Exception:
                    log.exception("event=dead_letter_failed offset=%d", record.offset)
                    return False  # not safe yet: the batch is read again
                self.poisoned += 1
        return True

    def _rewind(self, fetched: Fetched) -> None:
        assert self.consumer is not None
        for tp, part in fetched.items():
            # a partition no longer ours: its new owner reads it from the last commit
            with contextlib.suppress(IllegalStateError):
                self.consumer.seek(tp, part[0].offset)
