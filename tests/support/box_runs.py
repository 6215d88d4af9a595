"""Watching a running edge box in tests and benchmarks: frames analysed per camera (from
the worker in this process, or from a box's own ``/metrics``) and a smoke alarm sent."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from edge.worker import EdgeWorker


def analysed(edge: EdgeWorker, camera_id: str) -> int:
    """Frames the camera's current worker has analysed (0 before it runs)."""
    run = edge.cameras.get(camera_id)
    return run.worker.analysed if run is not None and run.worker is not None else 0


async def rates(edge: EdgeWorker, cameras: list[str], seconds: float) -> dict[str, float]:
    """Frames analysed per second over the next ``seconds``, per camera."""
    before = {c: analysed(edge, c) for c in cameras}
    await asyncio.sleep(seconds)
    return {c: (analysed(edge, c) - before[c]) / seconds for c in cameras}


def scraped_analysed(url: str) -> dict[str, float]:
    """``streetwatch_camera_frames_analysed_total`` per camera, from ``url``/metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "streetwatch_camera_frames_analysed":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["camera"]] = sample.value
    return out


def smoke_alarm(port: int, device: str) -> None:
    """One "alarm" reading of smoke detector ``device`` (town t1), QoS 1, acknowledged."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sm-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        body = {"state": "alarm", "ts": datetime.now(UTC).isoformat(), "seq": 1, "battery": 80}
        info = client.publish(f"neuron/t1/smoke/{device}/up", json.dumps(body), qos=1)
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
