"""A faust agent that only forwards each message: faust's per-message stream alone.

    python -m bench.faust_forward BOOTSTRAP IN_TOPIC OUT_TOPIC APP_ID PARTITIONS

Consumes with the dispatch worker's broker settings, in ``take_events``
batches, and produces one message per input through the faust producer,
without parsing, folding or storing anything. ``bench.dispatch`` runs it
side by side with the worker: it is why the worker reads alerts with its own
aiokafka consumer (:mod:`pipeline.alert_intake`) rather than a faust agent."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import faust

from core.kafka import KafkaConfig
from pipeline.app import BATCH, BATCH_WITHIN_S, faust_settings, quiet_worker


def forward_app(bootstrap: str, inp: str, out: str, app_id: str, partitions: int) -> faust.App:
    kafka = KafkaConfig(bootstrap=bootstrap, partitions=partitions)
    app = faust.App(app_id, **faust_settings(kafka, 6.0), datadir=f"/tmp/{app_id}")
    source = app.topic(inp, key_serializer="raw", value_serializer="raw", partitions=partitions)

    @app.agent(source)
    async def forward(stream: Any) -> None:
        pending: set[asyncio.Future[Any]] = set()
        async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            futures = [
                await app.producer.send(
                    out, e.key, e.value, partition=None, timestamp=None, headers=None
                )
                for e in batch
            ]
            acked = asyncio.ensure_future(asyncio.gather(*futures))
            pending.add(acked)
            acked.add_done_callback(pending.discard)

    return app


if __name__ == "__main__":
    bootstrap, inp, out, app_id, partitions = sys.argv[1:6]
    app = forward_app(bootstrap, inp, out, app_id, int(partitions))
    quiet_worker(app, "WARNING").execute_from_commandline()
