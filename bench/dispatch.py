"""Dispatch worker benchmark: alerts/s through dedup, against raw aiokafka, and scale-out.

    python -m bench.dispatch [--alerts 100000] [--sites 1000] [--partitions 4]

Starts its own Tansu on 127.0.0.1 and writes ``--alerts`` alerts onto an
input topic, keyed by site: ``--sites`` sites, each watched by three cameras
that re-alert in turn (a stall that stays put), every alert new (a new
``alert_id``, so none is a re-delivery). The first and the last alert of
each site come from a camera new to the case, so they are news and are
published at once: the worker's rate is measured from the broker timestamps
of the first "first" event to the last "last" event, whatever was held in
between. With the defaults a site gets 100 alerts, 5 of them news.

The run is long enough for steady state: the raw loop below reaches 15-25k
msg/s on 20,000 messages and 32-40k on 100,000 or more (its start-up weighs
less), and 1,000 site keys spread evenly on the partitions (the split is
printed), where 200 fell 28/26/18/28 % and capped two workers at 1.8x one.
Each configuration runs ``--rounds`` times, alternating, and the fastest of
each counts (the machine is shared; runs vary by tens of percent):

1. **raw aiokafka**: one consumer reads the input topic and, for every
   message, produces one message to another topic (acks=all, the same as the
   worker), waiting for the acknowledgements in batches: the broker-bound
   floor of any consume-transform-produce step.
2. **faust, forward only**: a faust agent producing one message per input,
   doing nothing else (``bench.faust_forward``): faust's per-message stream on
   its own, the reason the worker reads alerts with its own aiokafka consumer
   (:mod:`pipeline.alert_intake`).
3. **one worker**: a ``streetwatch dispatch`` process (faust app, alert
   intake, CaseEngine, SQLite case store, CloudEvents out) with the default
   ``[dedup] coalesce_s``: repeats of a known camera are held and published
   together.
4. **one worker, every change published** (``coalesce_s = 0``): one case
   event per alert, the worst case for the worker.
5. **two workers**: two default processes in one consumer group, sharing the
   partitions and one SQLite store.

Workers are measured after they joined the group and handled a warm-up
alert per site. They are paused (SIGSTOP, about a second, well inside the
session timeout) while the measured alerts are written, so, like the raw
loop, they start on a backlog, and the producer does not share the two
cores with them while they are timed.

Each line also gives the CPU time of the measured processes per input and
the cores they kept busy (CPU time x rate), and the broker's: on a 2-core
machine two workers cannot be more than two cores' worth faster than one.
Prints ``one worker / raw`` (target >= 0.25), ``two / one`` (target >= 1.7),
and the every-change worker against raw for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from core.kafka import KafkaConfig, create_topics
from core.records import Alert, Place, SourceKind
from streetwatch.brokers import start_tansu
from streetwatch.config import Config, parse_config
from streetwatch.processes import Child


@dataclass(frozen=True)
class Measured:
    """One configuration's run: the rate, messages out per input, and CPU use."""

    rate: float
    out_per_in: float = 1.0
    cpu_us: float = 0.0  # CPU time of the measured processes, per input
    broker_us: float = 0.0  # CPU time of the broker, per input

    @property
    def cores(self) -> float:
        """Cores the measured processes kept busy, on average, at this rate."""
        return self.cpu_us * self.rate / 1e6

    @property
    def broker_cores(self) -> float:
        return self.broker_us * self.rate / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time that some processes, and the broker, spend from now on."""

    def __init__(self, pids: Sequence[int], broker: int) -> None:
        self.pids, self.broker = pids, broker
        self.start = self._read()

    def _read(self) -> tuple[float, float]:
        return sum(cpu_seconds(p) for p in self.pids), cpu_seconds(self.broker)

    def done(self, n: int) -> tuple[float, float]:
        """CPU µs per input: of the processes, and of the broker."""
        procs, broker = (b - a for a, b in zip(self.start, self._read(), strict=True))
        return procs * 1e6 / n, broker * 1e6 / n


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


async def produce(
    bootstrap: str, topic: str, alerts: Sequence[Alert], paused: Sequence[Child] = ()
) -> None:
    """Write the alerts, keyed by place; the ``paused`` processes are stopped meanwhile.

    Pausing the consumers (SIGSTOP, for about a second: well inside the
    session timeout, so the group stays as it is) gives them the same
    backlog to start on as the raw loop has, and keeps this producer off the
    two cores they run on while they are measured.
    """
    messages = [(a.to_json_bytes(), a.place.place_id.encode()) for a in alerts]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    for p in paused:
        os.kill(p.proc.pid, signal.SIGSTOP)
    try:
        futures = [await producer.send(topic, value, key=key) for value, key in messages]
        await asyncio.gather(*futures)
    finally:
        for p in paused:
            os.kill(p.proc.pid, signal.SIGCONT)
        await producer.stop()


async def raw_rate(bootstrap: str, topic: str, n: int, broker: int) -> Measured:
    """Messages/s for consume + produce one message each, acks=all, batched acknowledgements."""
    out = f"raw-out-{uuid.uuid4().hex[:6]}"
    await create_topics(KafkaConfig(bootstrap=bootstrap), [out], 4)
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
        meter: CpuMeter | None = None
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if start is None and batches:
                start = time.perf_counter()
                meter = CpuMeter([os.getpid()], broker)
            futures = []
            for records in batches.values():
                for rec in records:
                    futures.append(await producer.send(out, rec.value, key=rec.key))
            await asyncio.gather(*futures)
            await consumer.commit()
            seen += len(futures)
        assert start is not None and meter is not None
        rate = n / (time.perf_counter() - start)
        return Measured(rate, 1.0, *meter.done(n))
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
    broker: int,
) -> Measured:
    """Warm the consumers up (one alert per site), let the group settle, then time ``n``."""
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        warm = make_alerts(sites, sites, now - timedelta(seconds=1), prefix="warm")
        await produce(bootstrap, alerts_topic, warm)
        await stamps_of(bootstrap, out_topic, ids(warm), timeout=120)
        await asyncio.sleep(settle_s)
        alerts = make_alerts(n, sites, now)
        await produce(bootstrap, alerts_topic, alerts, paused=procs)
        meter = CpuMeter([p.proc.pid for p in procs], broker)
        first, _ = await stamps_of(bootstrap, out_topic, ids(alerts[:sites]), timeout=600)
        last, seen = await stamps_of(bootstrap, out_topic, ids(alerts[-sites:]), timeout=600)
        cpu = meter.done(n)
        rate = n / max(1e-3, (last[-1] - first[0]) / 1000)
        return Measured(rate, (seen - len(warm)) / n, *cpu)
    finally:
        for p in procs:
            p.stop()


def partition_split(sites: int, partitions: int) -> str:
    """How the sites' alerts fall on the partitions (the producer's default hash of
    the site key): two workers finish when the busier half of the partitions is done."""
    every = list(range(partitions))
    part = DefaultPartitioner()
    counts = Counter(part(f"site-{s:04d}".encode(), every, every) for s in range(sites))
    shares = "/".join(f"{100 * counts[p] / sites:.0f}" for p in every)
    return f"sites per partition (%): {shares}"


def ids(alerts: Sequence[Alert]) -> set[bytes]:
    return {a.alert_id.encode() for a in alerts}


async def worker_rate(
    tmp: Path,
    bootstrap: str,
    n: int,
    sites: int,
    partitions: int,
    workers: int,
    broker: int,
    coalesce: bool = True,
) -> Measured:
    tag = f"{workers}w-{uuid.uuid4().hex[:6]}"
    alerts_topic = f"alerts-{tag}"
    cfg = worker_config(tmp, bootstrap, alerts_topic, partitions, tag, coalesce)
    k = cfg.kafka
    await create_topics(
        k, [alerts_topic, k.dispatch_topic, k.status_topic, k.dead_letter_topic], partitions
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
    return await settled_rate(
        bootstrap, alerts_topic, k.dispatch_topic, procs, n, sites, settle, broker
    )


async def forward_rate(
    tmp: Path, bootstrap: str, n: int, sites: int, partitions: int, broker: int
) -> Measured:
    tag = f"fwd-{uuid.uuid4().hex[:6]}"
    inp, out = f"in-{tag}", f"out-{tag}"
    await create_topics(KafkaConfig(bootstrap=bootstrap), [inp, out], partitions)
    cmd = [sys.executable, "-m", "bench.faust_forward", bootstrap, inp, out, tag, str(partitions)]
    procs = [Child("forward", cmd, log=tmp / f"{tag}.log")]
    return await settled_rate(bootstrap, inp, out, procs, n, sites, 6.0, broker)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as d:
        tmp = Path(d)
        tansu = start_tansu(tmp)
        fastest: dict[str, Measured] = {}

        def note(name: str, m: Measured, unit: str) -> None:
            if name not in fastest or m.rate > fastest[name].rate:
                fastest[name] = m
            print(
                f"  {name:<36} {m.rate:>7,.0f} {unit:<8} {m.out_per_in:5.3f} out/in "
                f"{m.cpu_us:4.0f} CPU us/in = {m.cores:4.2f} cores, broker {m.broker_cores:4.2f}",
                flush=True,
            )

        try:
            b = tansu.address
            for r in range(args.rounds):
                print(f"round {r + 1} of {args.rounds}", flush=True)
                topic = f"input-{uuid.uuid4().hex[:6]}"
                await create_topics(KafkaConfig(bootstrap=b), [topic], args.partitions)
                await produce(b, topic, make_alerts(args.alerts, args.sites))
                n, sites, parts = args.alerts, args.sites, args.partitions
                pid = tansu.child.proc.pid
                note("raw aiokafka consume+produce", await raw_rate(b, topic, n, pid), "msg/s")
                fwd = await forward_rate(tmp, b, n, sites, parts, pid)
                note("faust agent, forward only", fwd, "msg/s")
                one = await worker_rate(tmp, b, n, sites, parts, 1, pid)
                note("one dispatch worker", one, "alerts/s")
                every = await worker_rate(tmp, b, n, sites, parts, 1, pid, coalesce=False)
                note("one worker, every change published", every, "alerts/s")
                if not args.one_only:
                    two = await worker_rate(tmp, b, n, sites, parts, 2, pid)
                    note("two dispatch workers", two, "alerts/s")
            best = {name: m.rate for name, m in fastest.items()}
            raw = best["raw aiokafka consume+produce"]
            print(f"fastest of {args.rounds} rounds:")
            for name, label, target in (
                ("faust agent, forward only", "faust forward-only / raw", ""),
                ("one dispatch worker", "one worker / raw", "   (target >= 0.25)"),
                ("one worker, every change published", "every change published / raw", ""),
            ):
                print(f"  {label:<30} = {best[name] / raw:.3f}{target}")
            if not args.one_only:
                one, two = fastest["one dispatch worker"], fastest["two dispatch workers"]
                print(f"  {'two workers / one':<30} = {two.rate / one.rate:.2f}x  (target >= 1.7)")
                print(f"  {partition_split(args.sites, args.partitions)}")
                print(
                    f"  worker CPU per alert: one {one.cpu_us:.0f} us, two {two.cpu_us:.0f} us; "
                    f"cores busy (workers + broker) of {os.cpu_count()}: one worker "
                    f"{one.cores:.2f} + {one.broker_cores:.2f}, two {two.cores:.2f} + "
                    f"{two.broker_cores:.2f}"
                )
        finally:
            tansu.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--one-only", action="store_true", help="skip the two-worker run")
    p.add_argument("--rounds", type=int, default=3, help="alternate this often; report the best")
    asyncio.run(main(p.parse_args()))
