"""The dispatch worker's metrics and readiness, read from its own counters when scraped.

:class:`DispatchCollector` turns what the worker counts (the alert intake,
the case engine's :class:`~pipeline.case_engine.EngineStats`, this module's
:class:`DispatchStats`) and one count from the case store (events waiting
to be published) into Prometheus families at scrape time.
:func:`dispatch_readiness` says whether the worker does its job: its alert
intake joined the consumer group and the case store answers.
:class:`OpsService` serves them (``[dispatch] http``) as a service of the
faust app, on its loop. The README lists every metric ("Operating a box").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mode import Service
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from core.observability import (
    OpsServer,
    Readiness,
    counter,
    gauge,
    listen_address,
    new_registry,
    snapshot,
)
from pipeline.alert_intake import AlertIntake
from pipeline.case_engine import CaseEngine
from pipeline.store import CaseStore

log = logging.getLogger("streetwatch.dispatch")


@dataclass
class DispatchStats:
    """What the worker counts beside the intake and the engine (on its loop)."""

    published: Counter[str] = field(default_factory=Counter)  # events acknowledged, per type
    publish_failures: int = 0  # events whose send failed (kept in the outbox, sent again)
    store_errors: Counter[str] = field(default_factory=Counter)  # per operation
    invalid: Counter[str] = field(default_factory=Counter)  # unreadable input, per kind


@dataclass(frozen=True)
class DispatchParts:
    """The parts of a running dispatch worker the metrics read."""

    intake: AlertIntake
    engine: CaseEngine
    store: CaseStore
    stats: DispatchStats
    app_id: str


def _one(family: CounterMetricFamily | GaugeMetricFamily, value: float) -> Metric:
    family.add_metric([], value)
    return family


class DispatchCollector:
    """Every ``streetwatch_dispatch_*`` family, read when scraped."""

    def __init__(self, parts: DispatchParts) -> None:
        self.parts = parts

    def collect(self) -> Iterable[Metric]:
        intake, st, stats = self.parts.intake, self.parts.engine.stats, self.parts.stats
        yield _one(
            counter("streetwatch_dispatch_alerts_consumed", "Alerts folded by the case engine"),
            st.alerts,
        )
        yield _one(
            counter(
                "streetwatch_dispatch_alerts_duplicate",
                "Alerts that were re-deliveries and changed nothing",
            ),
            st.duplicates,
        )
        yield _one(
            counter("streetwatch_dispatch_alert_batches", "Alert fetches folded and committed"),
            intake.batches,
        )
        yield _one(
            counter(
                "streetwatch_dispatch_alert_batch_failures",
                "Alert fetches that failed (read again, or taken one alert at a time)",
            ),
            intake.failures,
        )
        yield _one(
            counter(
                "streetwatch_dispatch_alerts_poisoned",
                "Alerts that failed on their own and went to the dead letters",
            ),
            intake.poisoned,
        )
        invalid = counter(
            "streetwatch_dispatch_invalid_input",
            "Unreadable records sent to the dead letters, per input (alert, status update)",
            ["input"],
        )
        for kind, n in snapshot(stats.invalid).items():
            invalid.add_metric([kind], n)
        yield invalid
        published = counter(
            "streetwatch_dispatch_case_events_published",
            "Case events Kafka acknowledged on the dispatch topic, per type (opened, updated, "
            "reopened, status_changed, noted, sla_yellow, sla_red)",
            ["type"],
        )
        for kind, n in snapshot(stats.published).items():
            published.add_metric([kind], n)
        yield published
        yield _one(
            counter(
                "streetwatch_dispatch_publish_failures",
                "Case events whose send failed (they stay in the outbox; the timer resends)",
            ),
            stats.publish_failures,
        )
        updates = counter(
            "streetwatch_dispatch_status_updates",
            "Status updates taken, per outcome (applied, repeated, rejected)",
            ["outcome"],
        )
        rejected = snapshot(st.rejected)
        updates.add_metric(["applied"], st.updates_applied)
        updates.add_metric(["repeated"], st.updates_repeated)
        updates.add_metric(["rejected"], sum(rejected.values()))
        yield updates
        by_reason = counter(
            "streetwatch_dispatch_status_updates_rejected",
            "Status updates that could not apply, per reason",
            ["reason"],
        )
        for reason, n in rejected.items():
            by_reason.add_metric([reason], n)
        yield by_reason
        yield _one(
            counter("streetwatch_dispatch_sla_warnings", "SLA yellow and red warnings emitted"),
            st.sla_events,
        )
        yield _one(
            counter(
                "streetwatch_dispatch_changes_held",
                "Case changes held back to be published together ([dedup] coalesce_s)",
            ),
            st.held,
        )
        yield _one(
            counter("streetwatch_dispatch_changes_released", "Held changes published"),
            st.released,
        )
        yield _one(
            counter(
                "streetwatch_dispatch_store_conflicts",
                "Changes folded again because another worker moved the case first",
            ),
            st.conflicts,
        )
        errors = counter(
            "streetwatch_dispatch_store_errors",
            "Store operations that failed as unavailable, per operation (alerts, "
            "status_updates, tick); the work is retried",
            ["operation"],
        )
        for operation, n in snapshot(stats.store_errors).items():
            errors.add_metric([operation], n)
        yield errors
        assignment = intake.assignment
        yield _one(
            gauge(
                "streetwatch_dispatch_assigned_partitions",
                "Partitions of the alerts topic this worker reads",
            ),
            len(assignment) if assignment is not None else 0,
        )
        try:
            waiting, up = self.parts.store.unpublished_count(), 1.0
        except Exception as exc:
            log.warning("event=metrics_store_failed error=%s: %s", type(exc).__name__, exc)
            waiting, up = 0, 0.0
        yield _one(
            gauge("streetwatch_dispatch_store_up", "1 when the case store answered the scrape"),
            up,
        )
        if up:
            yield _one(
                gauge(
                    "streetwatch_dispatch_unpublished_events",
                    "Case events committed and not yet acknowledged on the dispatch topic",
                ),
                waiting,
            )


def dispatch_readiness(parts: DispatchParts) -> Readiness:
    """Ready when the alert intake joined its consumer group and the case store answers."""
    reasons: list[str] = []
    facts: dict[str, object] = {"app_id": parts.app_id}
    assignment = parts.intake.assignment
    if assignment is None:
        reasons.append("kafka: the alert intake has not joined its consumer group yet")
    else:
        facts["partitions"] = sorted(f"{tp.topic}:{tp.partition}" for tp in assignment)
    try:
        facts["unpublished_events"] = parts.store.unpublished_count()
    except Exception as exc:
        reasons.append(f"store: {type(exc).__name__}: {exc}")
    return Readiness(reasons, facts)


class OpsService(Service):
    """``/metrics``, ``/healthz`` and ``/readyz`` on the faust app's loop."""

    def __init__(self, server: OpsServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server

    async def on_start(self) -> None:
        await self.server.start()

    async def on_stop(self) -> None:
        await self.server.stop()


def dispatch_ops_service(http: str, parts: DispatchParts) -> OpsService | None:
    """The service at ``http`` (``[dispatch] http``); None when that is empty or port 0."""
    address = listen_address(http)
    if address is None:
        return None
    registry = new_registry()
    registry.register(DispatchCollector(parts))
    server = OpsServer(
        "dispatch",
        address,
        registry,
        lambda: dispatch_readiness(parts),
        facts=lambda: {"app_id": parts.app_id},
    )
    return OpsService(server)
