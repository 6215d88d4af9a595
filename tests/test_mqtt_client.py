"""The MQTT client against a real mosquitto with login, TLS and persistence.

Every published message carries a sequence number; the tests check the
exact set received, so a lost message cannot hide behind a count.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from ingest.mqtt_config import MqttConfig, MqttTlsConfig
from ingest.mqtt_source import MqttSource
from streetwatch.brokers import RunningBroker
from tests.support.faults import FaultRow, record
from tests.support.mqtt_tls import TlsFiles, make_certs
from tests.support.polling import wait_until
from tests.support.secure_mosquitto import start_secure_mosquitto

pytestmark = pytest.mark.integration

USERS = {"ingest": "ingest-pw", "sensor": "sensor-pw"}
TIMEOUT = 15.0


class SecureBroker:
    """A restartable secure mosquitto: same folder, same port, persistence kept."""

    def __init__(self, workdir: Path, tls: TlsFiles, *, require_certificate: bool = False):
        self.workdir = workdir
        self.tls = tls
        self.require_certificate = require_certificate
        self.running: RunningBroker | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        self.running = start_secure_mosquitto(
            self.workdir,
            self.tls,
            USERS,
            port=self.port or None,
            require_certificate=self.require_certificate,
        )
        self.port = self.running.port

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()  # SIGTERM: mosquitto saves its database on the way out
            self.running = None

    def log(self) -> str:
        return (self.workdir / "mosquitto.log").read_text(errors="replace")


class Inbox:
    """Collects what an MqttSource hands on; keeps every sequence number seen."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.topics: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes, received_at: datetime) -> None:
        assert received_at.tzinfo is not None
        with self._cond:
            self.seqs.append(int(json.loads(payload)["seq"]))
            self.topics.add(topic)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(set(self.seqs)) >= count, timeout):
                raise AssertionError(f"got {len(set(self.seqs))} distinct of {count} messages")


class Publisher:
    """A sensor-side QoS 1 publisher with its own persistent session.

    paho keeps unacknowledged messages and re-sends them after a reconnect;
    a message counts as delivered to the broker once its PUBACK came.
    """

    def __init__(
        self, port: int, tls: TlsFiles | None, client_id: str = "test-sensor-publisher"
    ) -> None:
        self.acked: set[int] = set()
        self.mids: dict[int, int] = {}  # seq -> mid
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if tls is not None:  # else the anonymous plain broker of conftest
            self.client.username_pw_set("sensor", USERS["sensor"])
            self.client.tls_set(ca_certs=str(tls.ca_cert))
        self.client.reconnect_delay_set(1, 2)
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "publisher could not connect"

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason.is_failure:
            self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self.acked.add(mid)

    def publish(self, seq: int, payload: bytes | None = None) -> None:
        topic = f"neuron/town-a/water_level/dev-{seq % 7}/up"
        if payload is None:
            payload = json.dumps({"value": seq / 100, "unit": "m", "seq": seq}).encode()
        # not under self._lock: paho holds its own lock while calling on_publish
        info = self.client.publish(topic, payload, qos=1)
        with self._lock:  # the PUBACK may have come already: acked keeps it
            self.mids[seq] = info.mid

    def all_acked(self) -> bool:
        with self._lock:
            return all(mid in self.acked for mid in self.mids.values())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker(tmp_path: Path, certs: TlsFiles) -> Iterator[SecureBroker]:
    b = SecureBroker(tmp_path / "broker", certs)
    yield b
    b.stop()


@pytest.fixture
def sources() -> Iterator[list[MqttSource]]:
    """MqttSources a test started; stopped at the end whatever happened."""
    started: list[MqttSource] = []
    yield started
    for s in started:
        s.stop()


def ingest_cfg(port: int, certs: TlsFiles, **changes: object) -> MqttConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "ingest",
        "password": USERS["ingest"],
        "tls": MqttTlsConfig(ca_file=str(certs.ca_cert)),
        "client_id": "test-ingest",
        "keepalive_s": 10,
        "reconnect_max_s": 2,
    }
    values.update(changes)
    return MqttConfig.model_validate(values, strict=False)


def started(sources: list[MqttSource], cfg: MqttConfig, inbox: Inbox) -> MqttSource:
    source = MqttSource(cfg, "unused-default-id", inbox)
    sources.append(source)
    source.start()
    return source


def test_config_rules() -> None:
    with pytest.raises(ValidationError, match="needs a username"):
        MqttConfig(password="x")
    with pytest.raises(ValidationError, match="not both"):
        MqttConfig(username="u", password="x", password_file="/run/secrets/mqtt")
    with pytest.raises(ValidationError, match="shared_group needs protocol"):
        MqttConfig(protocol="3.1.1", shared_group="ingest")
    with pytest.raises(ValidationError, match="cert_file and key_file"):
        MqttTlsConfig(cert_file="client.crt")
    with pytest.raises(ValidationError):
        MqttConfig(shared_group="a/b")
    assert MqttConfig().topic_filter == "neuron/+/+/+/up"
    assert MqttConfig(shared_group="ingest").topic_filter == "$share/ingest/neuron/+/+/+/up"
    with pytest.raises(ValueError, match="client id"):
        MqttSource(MqttConfig(), "", lambda t, p, r: None)


def test_bad_password_refused_then_good_login_over_tls(
    broker: SecureBroker,
    certs: TlsFiles,
    sources: list[MqttSource],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.mqtt_source")
    inbox = Inbox()
    bad = started(sources, ingest_cfg(broker.port, certs, password="wrong"), inbox)
    wait_until(lambda: bad.stats.refusals >= 1, "the refusal", timeout=TIMEOUT)
    refusals = [r.getMessage() for r in caplog.records if "event=mqtt_refused" in r.getMessage()]
    assert refusals, caplog.text
    assert "Not authorized" in refusals[0] and "user=ingest" in refusals[0]
    assert bad.stats.connects == 0 and not bad.subscribed.is_set()
    bad.stop()

    secret = tmp_path / "mqtt-password"
    secret.write_text(USERS["ingest"] + "\n")
    good_cfg = ingest_cfg(broker.port, certs, password=None, password_file=str(secret))
    good = started(sources, good_cfg, inbox)
    assert good.subscribed.wait(TIMEOUT), broker.log()
    pub = Publisher(broker.port, certs)
    pub.publish(1)
    inbox.wait_for(1)
    pub.close()
    assert inbox.topics == {"neuron/town-a/water_level/dev-1/up"}
    assert good.stats.connects == 1 and good.stats.refusals == 0
    assert "not authorised" in broker.log()


def test_client_certificate_and_unknown_ca(
    tmp_path: Path, certs: TlsFiles, sources: list[MqttSource]
) -> None:
    broker = SecureBroker(tmp_path / "broker", certs, require_certificate=True)
    try:
        assert certs.client_cert is not None and certs.client_key is not None
        tls = MqttTlsConfig(
            ca_file=str(certs.ca_cert),
            cert_file=str(certs.client_cert),
            key_file=str(certs.client_key),
        )
        good = started(sources, ingest_cfg(broker.port, certs, tls=tls), Inbox())
        assert good.subscribed.wait(TIMEOUT), broker.log()

        other = make_certs(tmp_path / "other-ca", client=False, ca_name="someone-else")
        stranger_cfg = ingest_cfg(
            broker.port, certs, client_id="stranger", tls=MqttTlsConfig(ca_file=str(other.ca_cert))
        )
        stranger = started(sources, stranger_cfg, Inbox())
        wait_until(lambda: stranger.stats.connect_failures >= 1, "a TLS failure", timeout=TIMEOUT)
        assert stranger.stats.connects == 0
    finally:
        for s in sources:
            s.stop()
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_messages_sent_while_stopped_arrive_after_restart(
    broker: SecureBroker, certs: TlsFiles, sources: list[MqttSource], protocol: str
) -> None:
    cfg = ingest_cfg(broker.port, certs, protocol=protocol)
    first = started(sources, cfg, Inbox())
    assert first.subscribed.wait(TIMEOUT)
    first.stop()  # the ingest goes away; its session stays on the broker

    pub = Publisher(broker.port, certs)
    for seq in range(100):
        pub.publish(seq)
    wait_until(pub.all_acked, "PUBACKs for all 100 messages", timeout=TIMEOUT)
    pub.close()

    inbox = Inbox()
    second = started(sources, cfg, inbox)  # a new process with the same client id
    inbox.wait_for(100)
    assert sorted(inbox.seqs) == list(range(100))
    assert second.stats.sessions_resumed == 1


def test_broker_restart_mid_stream_loses_nothing(
    broker: SecureBroker, certs: TlsFiles, sources: list[MqttSource]
) -> None:
    total = 400
    inbox = Inbox()
    source = started(sources, ingest_cfg(broker.port, certs), inbox)
    assert source.subscribed.wait(TIMEOUT)
    pub = Publisher(broker.port, certs)
    halfway = threading.Event()
    stop = threading.Event()

    def publish_all() -> None:
        for seq in range(total):
            pub.publish(seq)
            if seq == total // 2:
                halfway.set()
            if stop.wait(0.003):  # a steady stream, so the restart lands mid-stream
                return

    thread = threading.Thread(target=publish_all, name="test-publisher")
    thread.start()
    try:
        assert halfway.wait(TIMEOUT)
        inbox.wait_for(50)
        broker.stop()
        sent_before_outage = len(pub.mids)
        # polled every 10 ms: the broker must come back while the stream still runs
        wait_until(
            lambda: not pub.connected.is_set(),
            "the publisher to notice the outage",
            timeout=TIMEOUT,
            interval=0.01,
        )
        wait_until(
            lambda: len(pub.mids) > sent_before_outage + 10,
            "publishing into the outage",
            timeout=TIMEOUT,
            interval=0.01,
        )
        broker.start()
        restarted = time.monotonic()
        thread.join(TIMEOUT)
        wait_until(pub.all_acked, "PUBACKs for every message after the restart", timeout=TIMEOUT)
        inbox.wait_for(total)
        recovery = time.monotonic() - restarted
    finally:
        stop.set()
        thread.join()
        pub.close()
    assert set(inbox.seqs) == set(range(total))
    # QoS 1 is at least once: a few may come twice (dedup by seq happens downstream)
    duplicates = sum(n - 1 for n in Counter(inbox.seqs).values())
    record(
        FaultRow(
            f"mosquitto restarted mid-stream ({total} readings; a reading delivered twice is "
            "dropped by the reading checks)",
            alerts_raised=total,
            cases_delivered=len(set(inbox.seqs)),
            lost=total - len(set(inbox.seqs)),
            duplicated=0,
            recovery_s=recovery,
        )
    )
    print(f"restart: {total} sent, {duplicates} duplicates, {source.stats}")
    assert source.stats.disconnects >= 1 and source.stats.connects >= 2
    assert source.stats.sessions_resumed >= 1


def test_shared_group_splits_messages(
    broker: SecureBroker, certs: TlsFiles, sources: list[MqttSource]
) -> None:
    inboxes = [Inbox(), Inbox()]
    members = [
        started(
            sources,
            ingest_cfg(broker.port, certs, client_id=f"test-ingest-{i}", shared_group="ingest"),
            inbox,
        )
        for i, inbox in enumerate(inboxes)
    ]
    for m in members:
        assert m.subscribed.wait(TIMEOUT)
    pub = Publisher(broker.port, certs)
    for seq in range(200):
        pub.publish(seq)
    wait_until(pub.all_acked, "PUBACKs for all 200 messages", timeout=TIMEOUT)
    wait_until(
        lambda: sum(len(i.seqs) for i in inboxes) >= 200,
        "200 messages in the group",
        timeout=TIMEOUT,
    )
    pub.close()
    a, b = (i.seqs for i in inboxes)
    assert a and b, "both members should get a share"
    assert sorted(a + b) == list(range(200))  # all of them, none twice


def test_callback_error_is_counted_and_later_messages_flow(
    mosquitto: RunningBroker, sources: list[MqttSource]
) -> None:
    inbox = Inbox()

    def fragile(topic: str, payload: bytes, received_at: datetime) -> None:
        if json.loads(payload)["seq"] == 0:
            raise RuntimeError("a bug downstream")
        inbox(topic, payload, received_at)

    cfg = MqttConfig(port=mosquitto.port, client_id="test-fragile", session_expiry_s=0)
    source = MqttSource(cfg, "unused", fragile)
    sources.append(source)
    source.start()
    assert source.subscribed.wait(TIMEOUT)
    pub = Publisher(mosquitto.port, None, client_id="test-fragile-publisher")
    for seq in range(10):
        pub.publish(seq)
    inbox.wait_for(9)
    pub.close()
    assert sorted(inbox.seqs) == list(range(1, 10))
    assert source.stats.callback_errors == 1 and source.stats.messages == 10
