"""Subscribes to neuron sensor topics over MQTT (paho 2.x) and parses them.

QoS 1 with automatic reconnect; each message becomes a
:class:`~streetwatch.records.SensorReading` passed to ``on_reading``, or a
:class:`~ingest.sensor_payload.BadReading` passed to ``on_reject``. The
callbacks run on paho's network thread: keep them short.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.mqtt_config import MqttConfig
from ingest.sensor_payload import BadReading, parse_reading
from streetwatch.records import SensorReading

log = logging.getLogger(__name__)


class MqttReadings:
    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        on_reading: Callable[[SensorReading], None],
        on_reject: Callable[[BadReading, str], None],
    ) -> None:
        self.cfg = cfg
        self.on_reading = on_reading
        self.on_reject = on_reject
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, cfg.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("mqtt connect to %s:%s refused: %s", self.cfg.host, self.cfg.port, reason)
            return
        client.subscribe(self.cfg.subscribe, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        log.info("mqtt subscribed to %s", self.cfg.subscribe)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            reading = parse_reading(
                msg.topic, bytes(msg.payload), datetime.now(UTC), self.cfg.max_payload_bytes
            )
        except BadReading as bad:
            self.on_reject(bad, msg.topic)
            return
        self.on_reading(reading)
