"""The sensor processes (edge/sensor_process.py) against real mosquitto: readings
go through both children in order, and a killed child is replaced."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.records import Alert, AlertPhase
from edge.sensor_feed import FeedOutput
from edge.sensor_process import SensorService
from streetwatch.brokers import RunningBroker
from streetwatch.config import Config, parse_config
from tests.support.faults import FaultRow, record
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration


def config(tmp: Path, port: int) -> Config:
    return parse_config({
        "edge": {"box_id": "ws-svc", "evidence_dir": str(tmp)},
        "mqtt": {"port": port, "client_id": f"svc-{uuid.uuid4().hex[:8]}"},
        "device_types": [{
            "name": "water_level", "unit": "m",
            "rules": [{"type": "threshold", "rule_id": "level", "category": "water_level_high",
                       "enter": 0.5, "exit": 0.4}],
        }],
        "devices": [{"device_id": "wl-1", "type": "water_level", "name": "gauge"}],
    })  # fmt: skip


def publish(port: int, values: list[float], start_seq: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for i, v in enumerate(values):
        body = {"value": v, "unit": "m", "ts": time.time(), "seq": start_seq + i}
        client.publish("neuron/t/water_level/wl-1/up", json.dumps(body), qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


class Collected:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.lock = threading.Lock()

    def __call__(self, out: FeedOutput) -> None:
        with self.lock:
            self.alerts += [a.alert for a in out.alerts]


def test_readings_go_through_both_processes_and_a_killed_child_is_replaced(
    tmp_path: Path, mosquitto: RunningBroker
) -> None:
    cfg = config(tmp_path, mosquitto.port)
    got = Collected()
    service = SensorService(cfg, tmp_path, cfg.mqtt.client_id, got, started_at=datetime.now(UTC))
    service.start()
    try:
        assert service.subscribed.wait(30)
        publish(mosquitto.port, [0.1, 0.9, 0.8, 0.2, 0.7], 0)  # raise, clear, raise
        wait_until(lambda: service.readings == 5, "5 readings", timeout=30)
        wait_until(lambda: len(got.alerts) == 3, "3 alerts", timeout=30)
        assert [a.phase for a in got.alerts] == [
            AlertPhase.RAISED,
            AlertPhase.CLEARED,
            AlertPhase.RAISED,
        ]
        assert got.alerts[0].evidence[0].media_type == "image/svg+xml"  # drawn in the child

        rules = service._rules
        assert rules is not None and rules.pid is not None
        os.kill(rules.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(
            lambda: service.restarts == 1 and service.subscribed.is_set(),
            "the rules process replaced",
            timeout=30,
        )
        recovery = time.monotonic() - killed
        # the new rules process starts afresh: a high reading raises again
        publish(mosquitto.port, [0.95], 100)
        wait_until(lambda: service.readings == 6, "the 6th reading", timeout=30)
        wait_until(lambda: len(got.alerts) == 4, "the 4th alert", timeout=30)
        assert got.alerts[-1].phase is AlertPhase.RAISED
        record(
            FaultRow(
                "sensor rules process SIGKILLed and replaced (columns count alerts)",
                alerts_raised=4,
                cases_delivered=len(got.alerts),
                lost=4 - len(got.alerts),
                duplicated=len(got.alerts) - len({a.alert_id for a in got.alerts}),
                recovery_s=recovery,
            )
        )
    finally:
        service.stop()
    assert service._intake is not None and not service._intake.is_alive()
    assert service._rules is not None and not service._rules.is_alive()


def test_a_hovering_reading_is_one_alert_and_a_silent_device_goes_offline_once(
    tmp_path: Path, mosquitto: RunningBroker
) -> None:
    cfg = config(tmp_path, mosquitto.port)
    hb = cfg.device_types[0].model_copy(update={"heartbeat_s": 2.0})
    cfg = cfg.model_copy(update={"device_types": [hb]})
    got = Collected()
    service = SensorService(
        cfg, tmp_path, cfg.mqtt.client_id, got, started_at=datetime.now(UTC), tick_s=0.2
    )
    service.start()
    try:
        assert service.subscribed.wait(30)
        # 100 readings alternating just above and just below the alarm level
        publish(mosquitto.port, [0.51 if i % 2 else 0.49 for i in range(100)], 0)
        wait_until(lambda: service.readings == 100, "100 readings", timeout=30)
        time.sleep(0.5)
        high = [a for a in got.alerts if a.category == "water_level_high"]
        assert [a.phase for a in high] == [AlertPhase.RAISED]  # one alert, not fifty
        # then silence: offline once, after the 2 s heartbeat window
        silent_from = time.monotonic()
        wait_until(
            lambda: any(a.category == "device_offline" for a in got.alerts),
            "the device to go offline",
            timeout=10,
        )
        assert time.monotonic() - silent_from >= 1.0
        time.sleep(1.5)
        offline = [a for a in got.alerts if a.category == "device_offline"]
        assert [a.phase for a in offline] == [AlertPhase.RAISED]
        # the device reports again: one recovery
        publish(mosquitto.port, [0.2], 200)
        wait_until(
            lambda: len([a for a in got.alerts if a.category == "device_offline"]) == 2,
            "the device to come back",
            timeout=30,
        )
        offline = [a for a in got.alerts if a.category == "device_offline"]
        assert [a.phase for a in offline] == [AlertPhase.RAISED, AlertPhase.CLEARED]
    finally:
        service.stop()
