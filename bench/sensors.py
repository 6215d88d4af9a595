"""Sensor path benchmark: throughput against raw paho, and publish-to-alert latency.

    python -m bench.sensors [--readings 40000] [--rate 2000] [--seconds 10]

Starts its own mosquitto on 127.0.0.1 (unbounded queues), then in one run:

1. **Throughput.** ``--readings`` water-level readings (flat JSON, one
   device in 200, values that raise and clear now and then) are queued on
   the broker for a persistent MQTT 5 session while the subscriber is away;
   then the subscriber connects and drains them. Measured twice, side by
   side, on the same queued stream:

   - *raw paho*: a paho 2.x client with the same session, QoS 1 and manual
     acknowledgement as streetwatch's, whose callback only counts;
   - *streetwatch*: the edge worker (``edge/worker.py``): MQTT client,
     parser, reading checks, device rules, alerts to a memory sink.

   The ratio is streetwatch's readings/s over raw paho's (target >= 0.8).

2. **Latency.** A publisher in another process sends ``--rate`` readings
   per second for ``--seconds``, each stamped with its send time; one
   reading in 25 raises or clears an alert (half of them with a chart). The edge worker's alert sink
   notes when each alert reaches it; latency = that time - the stamp of the
   reading that fired it. Prints p50/p99/max (target p99 <= 500 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.records import Alert
from edge.worker import EdgeWorker
from streetwatch.brokers import start_mosquitto
from streetwatch.config import Config, parse_config

DEVICES = 200
EXCURSION_EVERY = 25  # one reading in this many crosses the threshold (raise or clear)
FILTER = "neuron/+/+/+/up"


def reading(i: int, sent_at: float) -> tuple[str, bytes]:
    """Reading ``i``: device i % DEVICES, alternately low and high for EXCURSION_EVERY
    readings; the devices' phases are staggered so their alerts spread over time."""
    device = i % DEVICES
    nth = i // DEVICES
    phase = (nth + device * 7) % (2 * EXCURSION_EVERY)
    high = phase >= EXCURSION_EVERY
    value = 0.9 if high else 0.1
    topic = f"neuron/bench/water_level/wl-{device:04d}/up"
    body = {"value": value, "unit": "m", "ts": sent_at, "seq": nth}
    return topic, json.dumps(body).encode()


def config(port: int, evidence: Path, client_id: str) -> Config:
    return parse_config({
        "edge": {"box_id": "ws-bench", "evidence_dir": str(evidence)},
        "mqtt": {"port": port, "client_id": client_id, "receive_maximum": 1000},
        "neuron": {"checks": {"max_age_s": 3600.0}},
        "device_types": [{
            "name": "water_level", "unit": "m",
            "rules": [{"type": "threshold", "rule_id": "level", "category": "water_level_high",
                       "enter": 0.5, "exit": 0.4}],
        }],
        "devices": [{"device_id": f"wl-{d:04d}", "type": "water_level", "town": "bench",
                     "name": f"gauge {d}"} for d in range(DEVICES)],
    })  # fmt: skip


def _session(port: int, client_id: str) -> None:
    """Create the persistent session (subscribed, QoS 1) and leave."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.on_connect = lambda cl, *a: cl.subscribe(FILTER, options=SubscribeOptions(qos=1))
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    assert done.wait(10), "no SUBACK"
    c.disconnect()
    c.loop_stop()


def _queue(port: int, n: int) -> None:
    """Publish ``n`` readings (QoS 1) for the absent subscriber."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(*reading(i, time.time()), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def raw_paho(port: int, client_id: str, n: int) -> float:
    """Readings/s of a counting paho subscriber draining ``n`` queued readings."""
    got = 0
    first = last = 0.0
    done = threading.Event()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last
        if got == 0:
            first = time.perf_counter()
        got += 1
        client.ack(msg.mid, msg.qos)
        if got == n:
            last = time.perf_counter()
            done.set()

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    c.on_message = on_message
    c.on_connect = lambda cl, *a: cl.subscribe(FILTER, options=SubscribeOptions(qos=1))
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    assert done.wait(300), f"raw subscriber got {got} of {n}"
    c.disconnect()
    c.loop_stop()
    return (n - 1) / (last - first)


class TimedSink:
    """Alert sink noting when each alert arrives (wall clock, like the publisher's stamps)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[Alert, float]] = []

    async def start(self) -> None:
        return None

    async def publish(self, alerts: Sequence[Alert]) -> None:
        now = time.time()
        self.arrivals.extend((alert, now) for alert in alerts)

    async def stop(self) -> None:
        return None


async def _edge_drain(cfg: Config, n: int) -> float:
    edge = EdgeWorker(cfg, TimedSink())
    stop = asyncio.Event()
    task = asyncio.create_task(edge.run(stop))
    first = last = 0.0
    while True:
        done = edge.stats.readings + sum(edge.stats.rejects.values())
        if done and not first:
            first = time.perf_counter()
            first_count = done
        if done >= n:
            last = time.perf_counter()
            break
        await asyncio.sleep(0.02)  # a coarse poll: a busy one would steal the GIL
    stop.set()
    await task
    assert sum(edge.stats.rejects.values()) == 0, edge.stats.rejects
    return (n - first_count) / (last - first)


def streetwatch_rate(port: int, evidence: Path, client_id: str, n: int) -> float:
    return asyncio.run(_edge_drain(config(port, evidence, client_id), n))


def publisher(port: int, rate: float, seconds: float) -> None:
    """Child process: publish at ``rate`` readings/s, stamped with the send time."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.time()
    total = int(rate * seconds)
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        c.publish(*reading(i, time.time()), qos=1)
    time.sleep(1.0)
    c.disconnect()
    c.loop_stop()


async def _latency(cfg: Config, port: int, rate: float, seconds: float) -> list[float]:
    sink = TimedSink()
    edge = EdgeWorker(cfg, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(edge.run(stop))
    await edge.ready.wait()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sensors", "--publish", str(port), str(rate), str(seconds)
    )
    await child.wait()
    await asyncio.sleep(1.0)
    stop.set()
    await task
    total = int(rate * seconds)
    assert edge.stats.readings == total, (edge.stats.readings, total, edge.stats.rejects)
    out = []
    for alert, arrived in sink.arrivals:
        stamped = alert.readings[-1].device_time
        assert stamped is not None
        out.append((arrived - stamped.timestamp()) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--readings", type=int, default=30000, help="queued readings to drain")
    p.add_argument("--rate", type=float, default=2000.0, help="readings/s for the latency run")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    p.add_argument("--repeat", type=int, default=3, help="drains of each; the fastest counts")
    p.add_argument(
        "--publish", nargs=3, metavar=("PORT", "RATE", "SECONDS"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.publish:
        publisher(int(args.publish[0]), float(args.publish[1]), float(args.publish[2]))
        return
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = start_mosquitto(tmp, extra=["max_queued_messages 0", "max_inflight_messages 0"])
        try:
            n = args.readings
            rates: dict[str, list[float]] = {"raw": [], "sw": []}
            for r in range(args.repeat):
                for kind in ("raw", "sw"):
                    cid = f"bench-{kind}-{r}"
                    _session(broker.port, cid)
                    _queue(broker.port, n)
                    if kind == "raw":
                        rates[kind].append(raw_paho(broker.port, cid, n))
                    else:
                        rates[kind].append(streetwatch_rate(broker.port, tmp / "ev", cid, n))
            raw, sw = max(rates["raw"]), max(rates["sw"])
            print(f"{n} queued QoS 1 readings, {DEVICES} devices; fastest of {args.repeat}")
            print(f"raw paho subscriber          {raw:9.0f} readings/s")
            print(f"streetwatch edge (rules)     {sw:9.0f} readings/s")
            print(f"streetwatch / raw paho       {sw / raw:9.3f}")
            cfg = config(broker.port, tmp / "ev", f"bench-latency-{uuid.uuid4().hex[:6]}")
            lat = asyncio.run(_latency(cfg, broker.port, args.rate, args.seconds))
            lat.sort()
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(
                f"latency at {args.rate:.0f} readings/s for {args.seconds:.0f} s: "
                f"{len(lat)} alerts, p50 {statistics.median(lat):.1f} ms, p99 {p99:.1f} ms, "
                f"max {lat[-1]:.1f} ms"
            )
        finally:
            broker.child.stop()


if __name__ == "__main__":
    main()
