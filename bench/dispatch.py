"""Dispatch worker benchmark: alerts/s through dedup, against raw aiokafka, and scale-out.

    python -m bench.dispatch [--alerts 20000] [--sites 200] [--partitions 4]

Starts its own Tansu on 127.0.0.1, writes ``--alerts`` alerts (keyed by
site, ``--sites`` sites, three sources each, every alert new so every one
yields a case event) onto an input topic, then in one run:

Each configuration runs ``--rounds`` times, alternating, and the fastest
of each counts (the machine is shared; runs vary by tens of percent):

1. **raw aiokafka**: one consumer reads the input topic and, for every
   message, produces one message to another topic (acks=all, the same as the
   worker), waiting for the acknowledgements in batches: the broker-bound
   floor of any consume-transform-produce step.
2. **faust, forward only**: a faust agent consuming like the worker and
   producing one message per input, doing nothing else (``bench.faust_forward``):
   the framework's own ceiling.
3. **one worker**: a ``streetwatch dispatch`` process (faust, CaseEngine,
   SQLite case store, CloudEvents out).
4. **two workers**: two such processes in one consumer group, sharing the
   partitions and one SQLite store.

Worker rates are measured on the dispatch topic, from the broker timestamps
of the first to the last case event of the measured stream, after the
workers joined the group and handled a warm-up alert per site.
Prints ``one worker / raw`` (target >= 0.25) and ``two / one`` (target >= 1.7).
"""

from __future__ import annotations

import argparse
import asyncio
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


def make_alerts(n: int, sites: int, base: datetime | None = None) -> list[Alert]:
    """Alerts stamped from ``base`` (now): cases filed now raise no SLA warning for minutes."""
    t0 = base or datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        site, nth = i % sites, i // sites
        source = f"cam-{site}-{nth % 3}"
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
    tmp: Path, bootstrap: str, alerts_topic: str, partitions: int, tag: str
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
            "dedup": {"merge_within_m": 0.0},
        }
    )


async def count_events(bootstrap: str, topic: str, want: int, timeout: float) -> list[int]:
    """Broker timestamps (ms) of the first ``want`` messages on ``topic``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"count-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(stamps)} of {want} case events on {topic}")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                stamps.extend(r.timestamp for r in records)
    finally:
        await consumer.stop()
    return sorted(stamps)


async def settled_rate(
    bootstrap: str,
    alerts_topic: str,
    out_topic: str,
    procs: Sequence[Child],
    n: int,
    sites: int,
    settle_s: float,
) -> float:
    """Warm the consumers up (one alert per site), let the group settle, then time ``n``."""
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        warm = make_alerts(sites, sites, now - timedelta(seconds=1))  # one per site
        await produce(bootstrap, alerts_topic, warm)
        await count_events(bootstrap, out_topic, len(warm), timeout=120)
        await asyncio.sleep(settle_s)
        await produce(bootstrap, alerts_topic, make_alerts(n, sites, now))
        stamps = await count_events(bootstrap, out_topic, len(warm) + n, timeout=600)
        measured = stamps[len(warm) :]
        return (len(measured) - 1) / max(1e-3, (measured[-1] - measured[0]) / 1000)
    finally:
        for p in procs:
            p.stop()


async def worker_rate(
    tmp: Path, bootstrap: str, n: int, sites: int, partitions: int, workers: int
) -> float:
    tag = f"{workers}w-{uuid.uuid4().hex[:6]}"
    alerts_topic = f"alerts-{tag}"
    cfg = worker_config(tmp, bootstrap, alerts_topic, partitions, tag)
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


async def forward_rate(tmp: Path, bootstrap: str, n: int, sites: int, partitions: int) -> float:
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

        def note(name: str, rate: float, unit: str) -> None:
            best[name] = max(best.get(name, 0.0), rate)
            print(f"  {name:<34} {rate:>9,.0f} {unit}", flush=True)

        try:
            b = tansu.address
            for r in range(args.rounds):
                print(f"round {r + 1} of {args.rounds}", flush=True)
                topic = f"input-{uuid.uuid4().hex[:6]}"
                await create_topics(b, [topic], args.partitions)
                await produce(b, topic, make_alerts(args.alerts, args.sites))
                note("raw aiokafka consume+produce", await raw_rate(b, topic, args.alerts), "msg/s")
                fwd = await forward_rate(tmp, b, args.alerts, args.sites, args.partitions)
                note("faust agent, forward only", fwd, "msg/s")
                one = await worker_rate(tmp, b, args.alerts, args.sites, args.partitions, 1)
                note("one dispatch worker", one, "alerts/s")
                if not args.one_only:
                    two = await worker_rate(tmp, b, args.alerts, args.sites, args.partitions, 2)
                    note("two dispatch workers", two, "alerts/s")
            raw, one = best["raw aiokafka consume+produce"], best["one dispatch worker"]
            print(f"fastest of {args.rounds} rounds:")
            print(f"  faust forward-only / raw = {best['faust agent, forward only'] / raw:.3f}")
            print(f"  one worker / raw         = {one / raw:.3f}   (target >= 0.25)")
            if not args.one_only:
                print(
                    f"  two workers / one        = {best['two dispatch workers'] / one:.2f}x"
                    "  (target >= 1.7)"
                )
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
