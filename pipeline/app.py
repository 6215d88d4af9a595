"""The dispatch worker: a faust app that folds alerts into cases.

Alerts arrive on the alerts topic keyed by place; the ``cases`` table, keyed
by (category, place), holds each open case. For every alert the agent
publishes the resulting case event on the dispatch topic (keyed by case id)
*before* it updates the table, so a crash in between re-delivers the alert,
which yields the same event again (same ``event_id``) rather than losing it.
Correctness never depends on replaying the table's changelog to its exact
end: ids are deterministic and consumers dedupe on ``event_id``.

``create_app`` builds a fresh app per call: nothing happens at import time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from pydantic import ValidationError

from pipeline.dedup import case_key, fold
from streetwatch.config import Config
from streetwatch.records import Alert, Case

log = logging.getLogger("streetwatch.dispatch")


def create_app(cfg: Config) -> faust.App:
    kafka, disp = cfg.kafka, cfg.dispatch
    app = faust.App(
        disp.app_id,
        broker=f"kafka://{kafka.bootstrap}",
        store="memory://",
        datadir=str(Path(disp.datadir)),
        web_enabled=False,
        topic_partitions=kafka.partitions,
        topic_replication_factor=1,
        broker_session_timeout=disp.session_timeout_s,
        broker_heartbeat_interval=max(1.0, disp.session_timeout_s / 6),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    alerts = app.topic(
        kafka.alerts_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=kafka.partitions,
    )
    dispatch = app.topic(
        kafka.dispatch_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=kafka.partitions,
    )
    dead = app.topic(kafka.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    cases = app.Table("cases", default=None, partitions=kafka.partitions)

    @app.agent(alerts)
    async def fold_alerts(stream: Any) -> None:
        async for key, value in stream.items():
            try:
                alert = Alert.model_validate_json(value)
            except ValidationError as exc:
                reason = f"invalid alert: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
                log.error("event=alert_rejected key=%r reason=%s", key, reason)
                await dead.send(key=key, value=value, headers={"reason": reason.encode()})
                continue
            k = case_key(alert.category, alert.place.place_id)
            stored = cases.get(k)
            current = Case.model_validate(stored) if stored is not None else None
            event = fold(current, alert, datetime.now(UTC))
            if event is None:
                log.info(
                    "event=alert_duplicate alert=%s case=%s",
                    alert.alert_id,
                    current and current.case_id,
                )
                continue
            await dispatch.send(key=event.case_id.encode(), value=event.to_json_bytes())
            cases[k] = event.case.model_dump(mode="json")
            log.info("event=case_%s case=%s version=%d", event.type, event.case_id, event.version)

    return app


def run_worker(cfg: Config, loglevel: str = "WARNING") -> None:
    """Run the dispatch worker in this process until SIGINT/SIGTERM."""
    app = create_app(cfg)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
