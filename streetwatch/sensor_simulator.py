"""A simulated neuron level sensor (e.g. a water-level gauge) for the demo.

Publishes one reading per ``interval`` seconds on the device's topic, in
its type's payload style (flat or ``params``): a slow wave that crosses the
device's threshold rule ``crossings`` times, with small noise that hovers
around it, and one malformed message to show that bad input is counted and
dead-lettered, not fatal.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.sensor_rules.config import SensorDevice
from edge.sensor_rules.threshold import ThresholdConfig
from ingest.topic_layout import TopicLayout


def levels(device: SensorDevice) -> tuple[float, float]:
    """(enter, exit) of the device's first threshold rule on its value."""
    for rule in device.rules:
        if isinstance(rule, ThresholdConfig) and rule.field == "value":
            return rule.enter, rule.exit
    raise ValueError(f"device {device.device.device_id} has no threshold rule on its value")


def payload(device: SensorDevice, value: float, at: datetime, seq: int) -> bytes:
    """One reading in the device type's payload style."""
    spec = device.type.payload_spec()
    if spec.vendor == "params":
        body: dict[str, object] = {
            "params": {spec.value_key: value, "unit": spec.unit},
            "ts": int(at.timestamp() * 1000),
            "msgId": seq,
        }
    else:
        body = {spec.value_key: value, "unit": spec.unit, "ts": at.isoformat(), "seq": seq}
    return json.dumps(body).encode()


def wave(
    i: int, n: int, low: float, high: float, crossings: int, noise: float, rng: random.Random
) -> float:
    """Reading ``i`` of ``n``: a cosine from ``low`` up to ``high`` and back, repeated."""
    phase = 2 * math.pi * crossings * i / n
    mid, amp = (low + high) / 2, (high - low) / 2
    return round(mid - amp * math.cos(phase) + rng.uniform(-noise, noise), 3)


def simulate(
    host: str,
    port: int,
    device: SensorDevice,
    layout: TopicLayout,
    *,
    readings: int = 60,
    interval: float = 1.0,
    crossings: int = 3,
    stop: threading.Event | None = None,
) -> int:
    """Publish the readings (QoS 1); return how many were published."""
    stop = stop or threading.Event()
    rng = random.Random(7)
    d = device.device
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{d.device_id}")
    client.connect(host, port)
    client.loop_start()
    topic = layout.topic(d.town or "demo-town", d.type, d.device_id)
    enter, exit_ = levels(device)
    low = exit_ - 0.3 * abs(enter) - 0.1
    high = enter + 0.3 * abs(enter) + 0.1
    sent = 0
    try:
        for i in range(readings):
            if stop.is_set():
                break
            value = wave(i, readings, low, high, crossings, 0.01, rng)
            body = payload(device, value, datetime.now(UTC), i)
            client.publish(topic, body, qos=1).wait_for_publish(5)
            sent += 1
            if i == readings // 2:
                client.publish(topic, b"{not json", qos=1).wait_for_publish(5)
            stop.wait(interval)
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(0.05)
    return sent
