"""The MQTT client of the neuron sensors (paho-mqtt 2.x, callback API 2).

:class:`MqttSource` subscribes with QoS 1 and hands every message on raw:
``on_message(topic, payload, received_at)``. Parsing, checks and dead
letters are the caller's business, so that a bad payload can never stop
the client.

Delivery guarantees
-------------------
- **Persistent session.** A fixed client id and ``clean_start = false``
  with a session expiry (MQTT 5), or ``clean_session = false`` (3.1.1): the
  broker keeps the subscription and queues QoS 1 messages while the client
  is away (stopped, crashed, network down, broker restarted with
  persistence on); they arrive after the next connect.
- **Acknowledged after the callback, or later.** The client runs with
  paho's ``manual_ack`` and sends the PUBACK only once ``on_message`` has
  returned, so a message whose callback never completed (the process died)
  is delivered again. Given ``on_delivery`` instead of ``on_message``, the
  callback gets a :class:`Receipt` and the caller acknowledges with
  :meth:`ack` once what the message caused is safe (the edge's sensor
  intake does so when the rules process has committed its alerts to the
  outbox). Delivery is at least once: a redelivered message has ``dup``
  set and is counted in :attr:`MqttStats.redelivered`; drop duplicates
  downstream (by the reading's ``seq``). An exception in the
  callback is logged and counted, and the message is still acknowledged: it
  would fail the same way again, and the next message must not wait for it.
- **Reconnect with backoff.** paho reconnects by itself, waiting
  ``reconnect_min_s``, doubling up to ``reconnect_max_s``; the wait goes
  back to the minimum after a successful connect. Every connect
  re-subscribes (harmless when the session was kept).

Callbacks run on paho's network thread: keep them short (hand the message
to a queue).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.mqtt_config import MqttConfig

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes, datetime], None]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What acknowledges one message to the broker: :meth:`MqttSource.ack`."""

    mid: int
    qos: int


OnDelivery = Callable[[str, bytes, datetime, Receipt], None]


@dataclass
class MqttStats:
    """Counters of one client; written on paho's thread, read anywhere."""

    connects: int = 0  # successful CONNACKs
    sessions_resumed: int = 0  # CONNACKs with session present
    disconnects: int = 0  # connections lost or closed after a successful connect
    refusals: int = 0  # CONNACKs refusing us (bad login, banned id, ...)
    connect_failures: int = 0  # TCP/TLS failures before any CONNACK
    subscribe_failures: int = 0
    messages: int = 0
    redelivered: int = 0  # messages with the dup flag (sent before, not acknowledged)
    callback_errors: int = 0
    last_refusal: str = ""


class MqttSource:
    """A persistent-session QoS 1 subscriber that hands messages on raw.

    ``client_id`` is used when ``cfg.client_id`` is empty (the edge worker
    passes ``streetwatch-{box_id}``). :attr:`subscribed` is set once the
    broker granted the subscription; :attr:`connected` while connected.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        on_message: OnMessage | None = None,
        *,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        """``on_message`` (acknowledged when it returns) or ``on_delivery`` (the caller
        acknowledges each :class:`Receipt` with :meth:`ack`): exactly one."""
        if (on_message is None) == (on_delivery is None):
            raise ValueError("give on_message or on_delivery")
        self.cfg = cfg
        self.client_id = cfg.client_id or client_id
        if not self.client_id:
            raise ValueError("an MQTT client id is needed for a persistent session")
        self.on_message = on_message
        self.on_delivery = on_delivery
        self.stats = MqttStats()
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self._stopping = False
        self._persistent = cfg.session_expiry_s > 0
        v5 = cfg.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else not self._persistent,
            manual_ack=True,
        )
        self.client.reconnect_delay_set(
            min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s
        )
        if cfg.tls is not None:
            self.client.tls_set(
                ca_certs=cfg.tls.ca_file,
                certfile=cfg.tls.cert_file,
                keyfile=cfg.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            self.client.tls_insecure_set(cfg.tls.insecure)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def start(self) -> None:
        """Connect in the background (retrying until :meth:`stop`) and subscribe."""
        self._stopping = False
        if self.cfg.username is not None:
            password = self.cfg.password
            if self.cfg.password_file is not None:
                text = Path(self.cfg.password_file).read_text(encoding="utf-8")
                password = text.splitlines()[0] if text else ""
            self.client.username_pw_set(self.cfg.username, password)
        properties: Properties | None = None
        if self.cfg.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.cfg.session_expiry_s
            properties.ReceiveMaximum = self.cfg.receive_maximum
        self.client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive_s,
            clean_start=not self._persistent,  # MQTT 5; 3.1.1 uses clean_session
            properties=properties,
        )
        self.client.loop_start()
        log.info(
            "event=mqtt_starting broker=%s client_id=%s protocol=%s tls=%s filter=%s",
            self.where,
            self.client_id,
            self.cfg.protocol,
            self.cfg.tls is not None,
            self.cfg.topic_filter,
        )

    def stop(self) -> None:
        """Disconnect, keeping the session on the broker, and end paho's thread."""
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.subscribed.clear()

    # paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error(
                "event=mqtt_refused broker=%s client_id=%s user=%s reason=%r: "
                "check [mqtt] username/password; retrying with backoff",
                self.where,
                self.client_id,
                self.cfg.username,
                str(reason),
            )
            # counted after the log line: whoever sees the count finds the line too
            self.stats.last_refusal = str(reason)
            self.stats.refusals += 1
            return
        self.stats.connects += 1
        if flags.session_present:
            self.stats.sessions_resumed += 1
        self.connected.set()
        log.info(
            "event=mqtt_connected broker=%s client_id=%s session_present=%s",
            self.where,
            self.client_id,
            flags.session_present,
        )
        if self.cfg.protocol == "5":
            client.subscribe(self.cfg.topic_filter, options=SubscribeOptions(qos=1))
        else:
            client.subscribe(self.cfg.topic_filter, qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self.stats.connect_failures += 1
        log.warning(
            "event=mqtt_connect_failed broker=%s client_id=%s tls=%s: broker unreachable or "
            "TLS handshake failed; retrying with backoff",
            self.where,
            self.client_id,
            self.cfg.tls is not None,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self.connected.is_set():
            return  # a refused or failed attempt, already logged
        self.connected.clear()
        self.subscribed.clear()
        self.stats.disconnects += 1
        if self._stopping:
            log.info("event=mqtt_disconnected broker=%s client_id=%s", self.where, self.client_id)
        else:
            log.warning(
                "event=mqtt_connection_lost broker=%s client_id=%s reason=%r: reconnecting",
                self.where,
                self.client_id,
                str(reason),
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            self.stats.subscribe_failures += 1
            log.error(
                "event=mqtt_subscribe_refused broker=%s filter=%s reason=%s",
                self.where,
                self.cfg.topic_filter,
                ",".join(failed),
            )
            return
        log.info("event=mqtt_subscribed broker=%s filter=%s", self.where, self.cfg.topic_filter)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received_at = datetime.now(UTC)
        self.stats.messages += 1
        if msg.dup:
            self.stats.redelivered += 1
        deferred = False
        try:
            if self.on_delivery is not None:
                self.on_delivery(
                    msg.topic, bytes(msg.payload), received_at, Receipt(msg.mid, msg.qos)
                )
                deferred = True
            else:
                assert self.on_message is not None
                self.on_message(msg.topic, bytes(msg.payload), received_at)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("event=mqtt_callback_error topic=%s", msg.topic)
        finally:
            if msg.qos > 0 and not deferred:
                client.ack(msg.mid, msg.qos)

    def ack(self, receipt: Receipt) -> None:
        """Acknowledge a message handed to ``on_delivery`` (from any thread)."""
        if receipt.qos > 0:
            self.client.ack(receipt.mid, receipt.qos)
