"""The dispatch worker: a faust app that turns alerts into cases.

- the alert intake (:mod:`pipeline.alert_intake`, a service of the app)
  reads alerts (keyed by site) a fetch at a time, folds them with the
  :class:`~pipeline.case_engine.CaseEngine`, and publishes the committed case
  events on the dispatch topic as CloudEvents, keyed by case id.
- ``move_cases`` takes :class:`StatusUpdate`s from the dispatch system.
- A timer emits SLA warnings, publishes the changes held back for
  ``[dedup] coalesce_s`` (see :mod:`pipeline.case_engine`), and publishes any
  committed event a dead worker left unpublished.

The case store is the state, not a faust table: each batch is committed to
the store before it is published, and the input offsets are committed (by
the intake for alerts, by faust for status updates) only after the batch was
handled. A crash anywhere re-delivers input that then
changes nothing (sources remember what they sent, updates their ids), and
the outbox holds what was committed but not yet published. So correctness
never depends on replaying a changelog to its exact end, and several workers
can share the partitions (a rebalance just moves whose batches they are):
the alerts in the group ``<app_id>-alerts``, status updates in faust's group
``<app_id>``.

``create_app`` builds a fresh app per call: nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faust
from pydantic import ValidationError

from core.kafka import KafkaConfig, sasl_login, ssl_context
from core.logs import JsonLogFormatter, LogFormat
from core.records import Alert, CaseEvent, CaseEventType, Record, StatusUpdate
from pipeline.alert_intake import AlertIntake, Records, intake_group
from pipeline.case_engine import CaseEngine, Clock, Rejected, utc_now
from pipeline.cloudevents import case_event_bytes
from pipeline.config import DispatchServiceConfig
from pipeline.evidence_links import EvidenceLinks
from pipeline.metrics import DispatchParts, DispatchStats, dispatch_ops_service
from pipeline.store import open_store, unavailable

log = logging.getLogger("streetwatch.dispatch")
R = TypeVar("R", bound=Record)

BATCH = 2000
BATCH_WITHIN_S = 0.05
TICK_S = 1.0
REPUBLISH_AFTER_S = 10.0
STATS_EVERY_S = 60.0


def _problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"


def broker_credentials(kafka: KafkaConfig) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """faust's credentials for ``[kafka]``'s security settings (the same TLS context and SASL
    login as :func:`core.kafka.client_kwargs`); None for PLAINTEXT. Reads the files now."""
    context = ssl_context(kafka)
    login = sasl_login(kafka)
    if login is not None:
        mechanism, username, password = login
        # with a context faust speaks SASL_SSL, without one SASL_PLAINTEXT
        return faust.SASLCredentials(
            username=username, password=password, ssl_context=context, mechanism=mechanism
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_settings(kafka: KafkaConfig, session_timeout_s: float) -> dict[str, Any]:
    """The worker's faust settings (also used by the benchmark's forward-only agent)."""
    return {
        "broker": f"kafka://{kafka.bootstrap}",
        "broker_credentials": broker_credentials(kafka),
        "store": "memory://",
        "web_enabled": False,
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
        "broker_session_timeout": session_timeout_s,
        "broker_heartbeat_interval": max(1.0, session_timeout_s / 6),
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        # case events are 2-8 KiB: batches of 16 KiB (the default) would carry a
        # handful each; a short linger lets one request carry a folded batch
        "producer_max_batch_size": 512 * 1024,
        "producer_linger": 0.005,
        "stream_buffer_maxsize": 4 * BATCH,
        "broker_max_poll_records": BATCH,
        "consumer_max_fetch_size": 8 * 1024 * 1024,
    }


def create_app(
    cfg: DispatchServiceConfig, clock: Clock = utc_now, *, ops: bool = False
) -> faust.App:
    """The worker's app; with ``ops``, it serves its metrics and health at
    ``[dispatch] http`` (:mod:`pipeline.metrics`)."""
    kafka, disp = cfg.kafka, cfg.dispatch
    app = faust.App(
        disp.app_id,
        **faust_settings(kafka, disp.session_timeout_s),
        datadir=str(Path(disp.datadir)),
    )

    def topic(name: str) -> Any:
        return app.topic(
            name, key_serializer="raw", value_serializer="raw", partitions=kafka.partitions
        )

    status = topic(kafka.status_topic)
    dead = app.topic(kafka.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    store = open_store(cfg.store.url)
    engine = CaseEngine.from_config(cfg, store, clock)
    source = f"streetwatch/{disp.app_id}"
    links = EvidenceLinks.from_config(cfg.evidence_links)  # evidence fetchable on the wire
    lock = asyncio.Lock()  # one read-fold-commit at a time in this worker
    stats = DispatchStats()

    acks: set[asyncio.Task[None]] = set()

    async def publish(events: Sequence[CaseEvent]) -> None:
        """Hand the events to the producer; mark them published once acknowledged.

        The next batch does not wait for these acknowledgements: the events are
        in the store's outbox already, and the timer republishes any that a
        failure left unacknowledged. Order per case holds: one producer, and
        each case's events go to one partition in the order they were sent.
        """
        if not events:
            return
        # straight to the producer: faust's per-message channel machinery cost more
        # than folding the alert
        producer = app.producer
        futures = [
            await producer.send(
                kafka.dispatch_topic,
                e.case_id.encode(),
                case_event_bytes(links.event(e) if links else e, source),
                partition=None,
                timestamp=None,
                headers=None,
            )
            for e in events
        ]
        task = asyncio.create_task(
            acknowledged(futures, [e.event_id for e in events], [e.type.value for e in events])
        )
        acks.add(task)
        task.add_done_callback(acks.discard)
        opened = sum(e.type is CaseEventType.OPENED for e in events)
        log.info("event=cases_published events=%d opened=%d", len(events), opened)
        for e in events:
            log.debug("event=case_%s case=%s version=%d", e.type, e.case_id, e.version)

    async def acknowledged(
        futures: Sequence[Awaitable[object]], ids: list[str], types: list[str]
    ) -> None:
        try:
            await asyncio.gather(*futures)
        except Exception as exc:  # the outbox keeps them; the timer sends them again
            stats.publish_failures += len(ids)
            log.warning("event=publish_failed events=%d error=%s", len(ids), exc)
            return
        stats.published.update(types)
        store.mark_published(ids)

    async def reject(key: bytes | None, value: bytes, reason: str) -> None:
        """To the dead letters, acknowledged by the broker before the input's offset moves."""
        log.error("event=input_rejected key=%r reason=%s", key, reason)
        acked = await dead.send(key=key, value=value, headers={"reason": reason.encode()})
        await acked

    async def poisoned(record: Any, exc: BaseException) -> None:
        """An alert that fails on its own (a bug it trips): to the dead letters, with why."""
        await reject(record.key, record.value, f"alert failed: {type(exc).__name__}: {exc}")

    async def readable(batch: Sequence[Any], model: type[R], what: str) -> list[R]:
        """The batch's records; the unreadable ones go to the dead letters."""
        good: list[R] = []
        for event in batch:
            try:
                good.append(model.model_validate_json(event.value))
            except ValidationError as exc:
                stats.invalid[what] += 1
                await reject(event.key, event.value, f"invalid {what}: {_problem(exc)}")
        return good

    async def fold_alerts(records: Records) -> None:  # under the lock
        await publish(engine.on_alerts(await readable(records, Alert, "alert")))

    def store_down(exc: BaseException) -> bool:
        down = unavailable(exc)
        if down:
            stats.store_errors["alerts"] += 1
        return down

    intake = AlertIntake(
        kafka=kafka,
        topic=kafka.alerts_topic,
        group=intake_group(disp.app_id),
        session_timeout_s=disp.session_timeout_s,
        max_records=BATCH,
        handle=fold_alerts,
        lock=lock,
        on_revoked=engine.forget,  # heads cached for partitions another worker may own now
        retryable=store_down,  # the store (or its network) failed: read the batch again
        on_poison=poisoned,
    )
    # faust starts a service instance as it does a class (App._prepare_subservice)
    app.service(intake)  # type: ignore[arg-type]

    async def apply_updates(updates: Sequence[StatusUpdate]) -> list[Rejected]:
        """Apply a batch of status updates, again and again while the store is unavailable:
        the batch is acknowledged to Kafka only after this returns (an update already
        applied is recognised by its id and changes nothing the second time)."""
        retry_s = 0.5
        while True:
            try:
                async with lock:
                    committed, rejected = engine.on_updates(updates)
                    await publish(committed)
                return rejected
            except Exception as exc:
                if not unavailable(exc):
                    raise
                stats.store_errors["status_updates"] += 1
                log.warning(
                    "event=status_updates_failed updates=%d error=%s (again in %.1fs)",
                    len(updates),
                    f"{type(exc).__name__}: {exc}",
                    retry_s,
                )
                await asyncio.sleep(retry_s)
                retry_s = min(30.0, 2 * retry_s)

    @app.agent(status)
    async def move_cases(stream: Any) -> None:
        async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            good = await readable(batch, StatusUpdate, "status update")
            for r in await apply_updates(good):
                await reject(r.update.case_id.encode(), r.update.to_json_bytes(), r.detail)

    reported = 0.0

    async def keep_time() -> None:
        """SLA warnings due now, held changes, events a failure left unpublished, the counts."""
        nonlocal reported
        async with lock:
            try:
                await publish(engine.tick())
                if engine.coalesce_s > 0:
                    await publish(engine.release_held())
                await publish(engine.unpublished(REPUBLISH_AFTER_S))
            except Exception as exc:
                if not unavailable(exc):
                    raise
                stats.store_errors["tick"] += 1
                # the store is down: this tick's work waits for the next one, nothing
                # is lost (SLA clocks, held changes and the outbox live in the store)
                log.warning("event=tick_skipped error=%s", f"{type(exc).__name__}: {exc}")
        if time.monotonic() - reported >= STATS_EVERY_S:
            reported = time.monotonic()
            st = engine.stats
            log.info(
                "event=dispatch_stats batches=%d failed_batches=%d poisoned=%d alerts=%d "
                "duplicates=%d "
                "held=%d released=%d updates=%d rejected=%s sla_events=%d conflicts=%d",
                intake.batches,
                intake.failures,
                intake.poisoned,
                st.alerts,
                st.duplicates,
                st.held,
                st.released,
                st.updates,
                dict(st.rejected),
                st.sla_events,
                st.conflicts,
            )

    app.timer(TICK_S)(keep_time)

    if ops:
        parts = DispatchParts(intake, engine, store, stats, disp.app_id)
        service = dispatch_ops_service(disp.http, parts)
        if service is not None:
            app.service(service)  # type: ignore[arg-type]

    return app


def run_worker(
    cfg: DispatchServiceConfig, loglevel: str = "WARNING", log_format: LogFormat = "text"
) -> None:
    """Run the dispatch worker in this process until SIGINT/SIGTERM, serving its metrics
    and health at ``[dispatch] http``."""
    app = create_app(cfg, ops=True)
    worker = quiet_worker(app, loglevel, log_format)
    tune_gc()
    worker.execute_from_commandline()


def json_logging(level: str) -> dict[str, Any]:
    """The faust worker's logging as JSON lines on stderr (faust replaces the handlers
    the command set up with its own)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "level": level.upper(),
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


GC_GEN0 = 50_000


def tune_gc() -> None:
    """Fewer, cheaper cyclic garbage collections for the worker's steady state.

    Every message makes short-lived objects (faust's message and event, the
    alert, the folded case), and with the default threshold (700 allocations)
    the collector runs every few messages, each full pass walking the whole
    heap of faust, aiokafka and pydantic: about a fifth of the engine's time.
    The long-lived objects of start-up are frozen out of every pass, and the
    young generation is collected after 50,000 allocations (a few MB).
    Cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, gen1, gen2)


def quiet_worker(app: faust.App, loglevel: str, log_format: LogFormat = "text") -> faust.Worker:
    """A faust worker without the terminal spinner, logging in ``log_format``.

    At WARNING and above faust shows a spinner that turns on every log record,
    and for that it sets the root logger to DEBUG: every debug call of faust,
    mode and aiokafka (one per produced message) then builds a record only for
    the handlers to drop it.
    """
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        logging_config=json_logging(loglevel) if log_format == "json" else None,
    )
    worker.spinner = None
    return worker
