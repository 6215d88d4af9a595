"""Edge outbox benchmark: alerts through the outbox and its forwarder, against direct
publishing, and how fast a backlog built during an outage drains.

    python -m bench.outbox [--alerts 20000] [--batch 50] [--backlog 10000] [--rounds 3]

Starts its own Tansu on 127.0.0.1. Alerts are real ``Alert`` records (a
camera place each, keyed by site like the edge's), raised in batches of
``--batch`` (what one MQTT batch of the sensor path raises; a camera raises
one at a time, far more rarely). Side by side, ``--rounds`` times,
alternating, the fastest of each counting:

1. **direct**: each batch handed to the Kafka alert sink (``acks="all"``),
   waiting for its acknowledgements, as the edge would without the outbox;
   and **direct, 500 at a time**: the same in the forwarder's batches of
   500, the ceiling of this broker and client for what the forwarder does;
2. **outbox**: each batch committed to the outbox (SQLite, WAL,
   ``synchronous = FULL``: on disk when ``put`` returns) by a producer thread,
   as the sensor rules or a camera thread would, while the forwarder on the
   event loop reads the lane, publishes through the same sink and deletes
   what the broker acknowledged; timed from the first put to the last
   delivery;
3. **backlog drain**: ``--backlog`` alerts put while the uplink is down (no
   forwarder), then a forwarder started: alerts/s until the lane is empty.
   The topic is then read back (one partition) to check the alerts arrived in
   the order they were raised.

Prints ``outbox / direct`` (target >= 0.8), also against the 500-at-a-time
ceiling, and the drain rate (target >= 5,000 alerts/s on this 2-core
machine).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from core.kafka import KafkaConfig, create_topics
from core.records import Alert, Place, SourceKind
from core.sites import SiteMap
from edge.alert_sink import KafkaAlertSink
from edge.outbox import Entry, Forwarder, Outbox
from streetwatch.brokers import start_tansu

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def make_alerts(n: int, run: str) -> list[Alert]:
    return [
        Alert(
            alert_id=f"alert-{run}-{i:07d}",
            category="illegal_stall",
            place=Place(place_id=f"site-{i % 200:03d}", name="Market street"),
            source_kind=SourceKind.CAMERA,
            source_id=f"cam-{i % 3}",
            rule_id="stall",
            rule_text="a stall in the zone for >= 120s",
            first_seen=T0,
            observed_at=T0 + timedelta(seconds=i),
            confidence=0.7,
        )
        for i in range(n)
    ]


def batches(alerts: Sequence[Alert], size: int) -> list[Sequence[Alert]]:
    return [alerts[i : i + size] for i in range(0, len(alerts), size)]


def sink_for(bootstrap: str, topic: str) -> KafkaAlertSink:
    return KafkaAlertSink(KafkaConfig(bootstrap=bootstrap, alerts_topic=topic), SiteMap(()))


async def direct(bootstrap: str, topic: str, alerts: list[Alert], size: int) -> float:
    sink = sink_for(bootstrap, topic)
    await sink.start()
    try:
        t = time.perf_counter()
        for batch in batches(alerts, size):
            await sink.publish(batch)
        return len(alerts) / (time.perf_counter() - t)
    finally:
        await sink.stop()


def forwarder(box: Outbox, sink: KafkaAlertSink) -> Forwarder:
    async def send(entries: Sequence[Entry]) -> None:
        await sink.publish([Alert.model_validate_json(e.value) for e in entries])

    return Forwarder(box, "alerts", send)


async def through_outbox(
    bootstrap: str, topic: str, alerts: list[Alert], size: int, folder: Path
) -> float:
    box = Outbox(folder / f"outbox-{uuid.uuid4().hex[:6]}.db")
    sink = sink_for(bootstrap, topic)
    await sink.start()
    fwd = forwarder(box, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(fwd.run(stop))

    def raise_all() -> None:  # a producer thread, like the sensor rules or a camera
        for batch in batches(alerts, size):
            box.put_records(batch)
            fwd.wake_threadsafe()

    try:
        t = time.perf_counter()
        producer = threading.Thread(target=raise_all)
        producer.start()
        while fwd.delivered < len(alerts):
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t
        producer.join()
        stop.set()
        await task
        return len(alerts) / elapsed
    finally:
        await sink.stop()
        box.close()


async def drain(bootstrap: str, alerts: list[Alert], folder: Path) -> tuple[float, bool]:
    topic = f"drain-{uuid.uuid4().hex[:6]}"
    await create_topics(KafkaConfig(bootstrap=bootstrap), [topic], 1)
    box = Outbox(folder / f"backlog-{uuid.uuid4().hex[:6]}.db")
    for batch in batches(alerts, 500):  # built while the uplink was down
        box.put_records(batch)
    sink = sink_for(bootstrap, topic)
    await sink.start()
    fwd = forwarder(box, sink)
    stop = asyncio.Event()
    try:
        t = time.perf_counter()
        task = asyncio.create_task(fwd.run(stop))
        while box.count("alerts"):
            await asyncio.sleep(0.005)
        rate = len(alerts) / (time.perf_counter() - t)
        stop.set()
        await task
    finally:
        await sink.stop()
        box.close()
    return rate, await arrived_in_order(bootstrap, topic, [a.alert_id for a in alerts])


async def arrived_in_order(bootstrap: str, topic: str, ids: list[str]) -> bool:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(ids) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += [Alert.model_validate_json(r.value).alert_id for r in records]
    finally:
        await consumer.stop()
    return got == ids


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        folder = Path(tmp)
        tansu = start_tansu(folder)
        try:
            topic = f"alerts-{uuid.uuid4().hex[:6]}"
            await create_topics(KafkaConfig(bootstrap=tansu.address), [topic], 4)
            await direct(tansu.address, topic, make_alerts(2000, "warm"), args.batch)
            best: dict[str, float] = {"direct": 0.0, "ceiling": 0.0, "outbox": 0.0, "drain": 0.0}
            in_order = True
            print(
                f"{args.alerts} alerts in batches of {args.batch}, backlog {args.backlog}; "
                f"one Tansu; fastest of {args.rounds} rounds"
            )
            for r in range(1, args.rounds + 1):
                run = uuid.uuid4().hex[:6]
                d = await direct(tansu.address, topic, make_alerts(args.alerts, run), args.batch)
                c = await direct(tansu.address, topic, make_alerts(args.alerts, run + "c"), 500)
                o = await through_outbox(
                    tansu.address, topic, make_alerts(args.alerts, run + "o"), args.batch, folder
                )
                dr, ordered = await drain(
                    tansu.address, make_alerts(args.backlog, run + "d"), folder
                )
                in_order = in_order and ordered
                print(
                    f"round {r}: direct {d:8,.0f}   direct 500 at a time {c:8,.0f}   "
                    f"outbox+forwarder {o:8,.0f}   backlog drain {dr:8,.0f} alerts/s "
                    f"({'in order' if ordered else 'OUT OF ORDER'})"
                )
                got = (d, c, o, dr)
                best = {k: max(v, x) for (k, v), x in zip(best.items(), got, strict=True)}
            ratio = best["outbox"] / best["direct"]
            ceiling = best["outbox"] / best["ceiling"]
            print(f"  outbox / direct                = {ratio:.3f}   (target >= 0.8)")
            print(f"  outbox / direct 500 at a time  = {ceiling:.3f}")
            print(f"  backlog drain = {best['drain']:,.0f} alerts/s   (target >= 5,000)")
            print(f"  drained in order = {in_order}")
        finally:
            tansu.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--alerts", type=int, default=20000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--backlog", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(p.parse_args()))
