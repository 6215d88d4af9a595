"""Dispatch worker benchmark: alerts/s through dedup, against raw aiokafka, and scale-out.

    python -m bench.dispatch [--alerts 20000] [--sites 200] [--partitions 4]

Starts its own Tansu on 127.0.0.1 and writes ``--alerts`` alerts onto an
input topic, keyed by site: ``--sites`` sites, each watched by three cameras
that re-alert in turn (a stall that stays put), every alert new (a new
``alert_id``, so none is a re-delivery). The first and the last alert of
each site come from a camera new to the case, so they are news and are
published at once: the worker's rate is measured from the broker timestamps
of the first "first" event to the last "last" event, whatever was held in
between. Each configuration runs ``--rounds`` times, alternating, and the
fastest of each counts (the machine is shared; runs vary by tens of percent):

1. **raw aiokafka**: one consumer reads the input topic and, for every
   message, produces one message to another topic (acks=all, the same as the
   worker), waiting for the acknowledgements in batches: the broker-bound
   floor of any consume-transform-produce step.
2. **faust, forward only**: a faust agent consuming like the worker and
   producing one message per input, doing nothing else (``bench.faust_forward``):
   the framework's own ceiling.
3. **one worker**: a ``streetwatch dispatch`` process (faust, CaseEngine,
   SQLite case store, CloudEvents out) with the default ``[dedup]
   coalesce_s``: repeats of a known camera are held and published together.
4. **one worker, every change published** (``coalesce_s = 0``): one case
   event per alert, the worst case for the worker.
5. **two workers**: two default processes in one consumer group, sharing the
   partitions and one SQLite store.

Workers are measured after they joined the group and handled a warm-up
alert per site. Prints ``one worker / raw`` (target >= 0.25), ``two / one``
(target >= 1.7), and the every-change worker against raw for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from edge.kafka_io import create_topics
from streetwatch.brokers import start_tansu
from streetwatch.config import Config, parse_config
from streetwatch.processes import Child
from streetwatch.records import Alert, Place, SourceKind


def make_alerts(
    n: int, sites: int, base: datetime | None = None, prefix: str = "cam"
) -> list[Alert]:
    """Alerts stamped from ``base`` (now): cases filed now raise no SLA warning for minutes.

    Site by site in turn; three cameras per site re-alert in turn, except that
    the first and the last alert of a site come from cameras named ``...-first``
    and ``...-last``.
    """
    t0 = base or datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        site, nth = i % sites, i // sites
        camera = "first" if nth == 0 else "last" if i + sites >= n else str(nth % 3)
        source = f"{prefix}-{site}-{camera}"
        observed = t0 + timedelta(seconds=nth)
        place = f"site-{site:04d}"
        out.append(
            Alert(
                alert_id=Alert.make_id(source, "stall", place, observed),
                category="illegal_stall",
                place=Place(place_id=place, name=f"Street {site}"),
                source_kind=SourceKind.CAMERA,
                source_id=source,
                rule_id="stall",
                rule_text="people and goods held still 300 s",
                first_seen=t0,
                observed_at=observed,
                confidence=0.7,
            )
        )
    return out


async def produce(bootstrap: str, topic: str, alerts: Sequence[Alert]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, a.to_json_bytes(), key=a.place.place_id.encode())
            for a in alerts
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_rate(bootstrap: str, topic: str, n: int) -> float:
    """Messages/s for consume + produce one message each, acks=all, batched acknowledgements."""
    out = f"raw-out-{uuid.uuid4().hex[:6]}"
    await create_topics(bootstrap, [out], 4)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # the same producer batching as the dispatch worker's
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        start: float | None = None
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if start is None and batches:
                start = time.perf_counter()
            futures = []
            for records in batches.values():
                for rec in records:
                    futures.append(await producer.send(out, rec.value, key=rec.key))
            await asyncio.gather(*futures)
            await consumer.commit()
            seen += len(futures)
        assert start is not None
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


def worker_config(
    tmp: Path, bootstrap: str, alerts_topic: str, partitions: int, tag: str, coalesce: bool
) -> Config:
    return parse_config(
        {
            "kafka": {
                "bootstrap": bootstrap,
                "alerts_topic": alerts_topic,
                "dispatch_topic": f"dispatch-{tag}",
                "status_topic": f"status-{tag}",
                "dead_letter_topic": f"dead-{tag}",
                "partitions": partitions,
            },
            "dispatch": {
                "app_id": f"bench-{tag}",
                "datadir": str(tmp / f"faust-{tag}"),
                "session_timeout_s": 6.0,
            },
            "store": {"url": f"sqlite:///{tmp / f'cases-{tag}.db'}"},
            "dedup": {"merge_within_m": 0.0} | ({} if coalesce else {"coalesce_s": 0.0}),
        }
    )


async def stamps_of(
    bootstrap: str, topic: str, causes: set[bytes], timeout: float
) -> tuple[list[int], int]:
    """Broker timestamps (ms) of the messages on ``topic`` caused by ``causes`` (case
    events' ``cause_id``; forwarded alerts' ``alert_id``), waiting for all of them;
    and how many messages came before the last of them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"count-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    stamps: dict[bytes, int] = {}
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < len(causes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(stamps)} of {len(causes)} events on {topic}")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    seen += 1
                    cause = cause_of(r.value)
                    if cause in causes:
                        stamps[cause] = r.timestamp
    finally:
        await consumer.stop()
    return sorted(stamps.values()), seen


def cause_of(value: bytes) -> bytes:
    doc = json.loads(value)
    data = doc.get("data")
    return str(data["cause_id"] if data else doc["alert_id"]).encode()


async def settled_rate(
    bootstrap: str,
    alerts_topic: str,
    out_topic: str,
    procs: Sequence[Child],
    n: int,
    sites: int,
    settle_s: float,
) -> tuple[float, float]:
    """Warm the consumers up (one alert per site), let the group settle, then time ``n``.

    The rate and how many messages came out per alert."""
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        warm = make_alerts(sites, sites, now - timedelta(seconds=1), prefix="warm")
        await produce(bootstrap, alerts_topic, warm)
        await stamps_of(bootstrap, out_topic, ids(warm), timeout=120)
        await asyncio.sleep(settle_s)
        alerts = make_alerts(n, sites, now)
        await produce(bootstrap, alerts_topic, alerts)
        first, _ = await stamps_of(bootstrap, out_topic, ids(alerts[:sites]), timeout=600)
        last, seen = await stamps_of(bootstrap, out_topic, ids(alerts[-sites:]), timeout=600)
        rate = n / max(1e-3, (last[-1] - first[0]) / 1000)
        return rate, (seen - len(warm)) / n
    finally:
        for p in procs:
            p.stop()


def ids(alerts: Sequence[Alert]) -> set[bytes]:
    return {a.alert_id.encode() for a in alerts}


async def worker_rate(
    tmp: Path,
    bootstrap: str,
    n: int,
    sites: int,
    partitions: int,
    workers: int,
    coalesce: bool = True,
) -> tuple[float, float]:
    tag = f"{workers}w-{uuid.uuid4().hex[:6]}"
    alerts_topic = f"alerts-{tag}"
    cfg = worker_config(tmp, bootstrap, alerts_topic, partitions, tag, coalesce)
    k = cfg.kafka
    await create_topics(
        bootstrap, [alerts_topic, k.dispatch_topic, k.status_topic, k.dead_letter_topic], partitions
    )
    path = tmp / f"{tag}.json"
    path.write_text(cfg.model_dump_json())
    procs = [
        Child(
            f"worker-{i}",
            [sys.executable, "-m", "streetwatch.cli", "dispatch", "--config", str(path)],
            log=tmp / f"{tag}-{i}.log",
        )
        for i in range(workers)
    ]
    settle = 2 * cfg.dispatch.session_timeout_s
    return await settled_rate(bootstrap, alerts_topic, k.dispatch_topic, procs, n, sites, settle)


async def forward_rate(
    tmp: Path, bootstrap: str, n: int, sites: int, partitions: int
) -> tuple[float, float]:
    tag = f"fwd-{uuid.uuid4().hex[:6]}"
    inp, out = f"in-{tag}", f"out-{tag}"
    await create_topics(bootstrap, [inp, out], partitions)
    cmd = [sys.executable, "-m", "bench.faust_forward", bootstrap, inp, out, tag, str(partitions)]
    procs = [Child("forward", cmd, log=tmp / f"{tag}.log")]
    return await settled_rate(bootstrap, inp, out, procs, n, sites, 6.0)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as d:
        tmp = Path(d)
        tansu = start_tansu(tmp)
        best: dict[str, float] = {}

        def note(name: str, measured: tuple[float, float], unit: str) -> None:
            rate, out_per_in = measured
            best[name] = max(best.get(name, 0.0), rate)
            print(
                f"  {name:<40} {rate:>9,.0f} {unit:<9} {out_per_in:6.3f} out per input",
                flush=True,
            )

        try:
            b = tansu.address
            for r in range(args.rounds):
                print(f"round {r + 1} of {args.rounds}", flush=True)
                topic = f"input-{uuid.uuid4().hex[:6]}"
                await create_topics(b, [topic], args.partitions)
                await produce(b, topic, make_alerts(args.alerts, args.sites))
                n, sites, parts = args.alerts, args.sites, args.partitions
                note("raw aiokafka consume+produce", (await raw_rate(b, topic, n), 1.0), "msg/s")
                fwd = await forward_rate(tmp, b, n, sites, parts)
                note("faust agent, forward only", fwd, "msg/s")
                one = await worker_rate(tmp, b, n, sites, parts, 1)
                note("one dispatch worker", one, "alerts/s")
                every = await worker_rate(tmp, b, n, sites, parts, 1, coalesce=False)
                note("one worker, every change published", every, "alerts/s")
                if not args.one_only:
                    two = await worker_rate(tmp, b, n, sites, parts, 2)
                    note("two dispatch workers", two, "alerts/s")
            raw = best["raw aiokafka consume+produce"]
            print(f"fastest of {args.rounds} rounds:")
            for name, label, target in (
                ("faust agent, forward only", "faust forward-only / raw", ""),
                ("one dispatch worker", "one worker / raw", "   (target >= 0.25)"),
                ("one worker, every change published", "every change published / raw", ""),
            ):
                print(f"  {label:<30} = {best[name] / raw:.3f}{target}")
            if not args.one_only:
                two_one = best["two dispatch workers"] / best["one dispatch worker"]
                print(f"  {'two workers / one':<30} = {two_one:.2f}x  (target >= 1.7)")
        finally:
            tansu.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--alerts", type=int, default=20_000)
    p.add_argument("--sites", type=int, default=200)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--one-only", action="store_true", help="skip the two-worker run")
    p.add_argument("--rounds", type=int, default=3, help="alternate this often; report the best")
    asyncio.run(main(p.parse_args()))
