"""A simulated neuron water-level gauge for the demo.

Publishes one reading per ``interval`` seconds on
``neuron/{town}/{device_type}/{device_id}/up``: a slow wave that crosses the
alarm level ``crossings`` times, with small noise that hovers around it, and
one malformed message to show that bad input is counted, not fatal.
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

from streetwatch.config import SensorConfig


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
    sensor: SensorConfig,
    *,
    town: str = "demo-town",
    readings: int = 60,
    interval: float = 1.0,
    crossings: int = 3,
    stop: threading.Event | None = None,
) -> int:
    """Publish the readings (QoS 1); return how many were published."""
    stop = stop or threading.Event()
    rng = random.Random(7)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{sensor.device_id}")
    client.connect(host, port)
    client.loop_start()
    topic = f"neuron/{town}/{sensor.device_type}/{sensor.device_id}/up"
    low = sensor.clear_below - 0.3 * abs(sensor.alarm_above) - 0.1
    high = sensor.alarm_above + 0.3 * abs(sensor.alarm_above) + 0.1
    sent = 0
    try:
        for i in range(readings):
            if stop.is_set():
                break
            value = wave(i, readings, low, high, crossings, 0.01, rng)
            body = {"value": value, "ts": datetime.now(UTC).isoformat(), "unit": sensor.unit}
            client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
            sent += 1
            if i == readings // 2:
                client.publish(topic, b"{not json", qos=1).wait_for_publish(5)
            stop.wait(interval)
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(0.05)
    return sent
