"""Faults between a camera or a sensor and the dispatch system, with real processes.

`streetwatch edge` and `streetwatch dispatch` run as child processes against
their own Tansu and mosquitto; the test freezes the Kafka broker
(SIGSTOP/SIGCONT: the uplink hangs, it does not refuse) or SIGKILLs the whole
edge box right after a one-off alarm, and then checks what reached the
dispatch topic: every alert raised is in exactly one case, once. Each test
adds a row to the fault table printed after the run (tests/support/faults.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from centre.evidence_service import new_token, token_digest
from core.kafka import KafkaConfig, ensure_topics
from core.records import Alert, Case
from streetwatch.brokers import RunningBroker, start_mosquitto, start_tansu
from streetwatch.processes import Child, free_port
from tests.support.edge_configs import BAY_PLACE, parking_camera
from tests.support.faults import FaultRow, record
from tests.support.kafka_helpers import Topic, fresh_kafka
from tests.support.paths import VTEST
from tests.support.polling import until

pytestmark = pytest.mark.integration

REPEAT_S = 5.0  # the parking rule raises again this often while the van stands
OUTAGE_S = 60.0


@dataclass
class Centre:
    """One run's brokers, topics and dispatch worker."""

    tmp: Path
    tansu: RunningBroker
    mosquitto: RunningBroker
    kafka: KafkaConfig
    dispatch: Child

    def edge(
        self,
        devices: list[str],
        camera: bool,
        name: str = "edge",
        evidence: dict[str, object] | None = None,
    ) -> Child:
        """``streetwatch edge`` in its own process group, from an edge-only file."""
        path = self.tmp / "edge.json"
        if not path.exists():
            sections = edge_sections(self, devices, camera, clips=evidence is not None)
            sections["edge"] = {**sections["edge"], **(evidence or {})}  # type: ignore[dict-item]
            path.write_text(json.dumps(sections))
        return Child(
            name,
            [sys.executable, "-m", "streetwatch.cli", "edge", "--config", str(path)],
            log=self.tmp / f"{name}.log",
        )

    def ready(self, name: str) -> bool:
        """Whether the edge process ``name`` logged that it runs."""
        log = self.tmp / f"{name}.log"
        return log.exists() and "event=ready" in log.read_text(errors="replace")

    def evidence_service(self) -> tuple[dict[str, object], Path]:
        """Set up (not start) an evidence service for box ws-fault: the edge's upload
        settings and the service's store."""
        token = new_token()
        (self.tmp / "box.token").write_text(token)
        port = free_port()
        store = self.tmp / "evidence-store"
        box = {"box_id": "ws-fault", "token_sha256": token_digest(token)}
        sections = {"evidence": {"port": port, "store_dir": str(store), "boxes": [box]}}
        (self.tmp / "centre.json").write_text(json.dumps(sections))
        uploads: dict[str, object] = {
            "evidence_url": f"http://127.0.0.1:{port}",
            "evidence_token_file": str(self.tmp / "box.token"),
        }
        return uploads, store

    def start_evidence_service(self) -> Child:
        return Child(
            "evidence",
            [sys.executable, "-m", "streetwatch.cli", "evidence", "serve", "--config",
             str(self.tmp / "centre.json")],
            log=self.tmp / "evidence.log",
        )  # fmt: skip

    @property
    def outbox(self) -> Path:
        return self.tmp / "evidence" / "outbox.db"


def edge_sections(
    centre: Centre, devices: list[str], camera: bool, clips: bool = False
) -> dict[str, object]:
    cameras = [parking_camera(VTEST, repeat_s=REPEAT_S, clips=clips, loop=True)]
    return {
        "edge": {"box_id": "ws-fault", "evidence_dir": str(centre.tmp / "evidence")},
        "kafka": centre.kafka.model_dump(),
        "mqtt": {"port": centre.mosquitto.port, "client_id": f"edge-{uuid.uuid4().hex[:8]}"},
        "places": [BAY_PLACE],
        "cameras": cameras if camera else [],
        "devices": [
            {"device_id": d, "type": "smoke", "town": "t1", "name": f"Stairwell {d}"}
            for d in devices
        ],
    }


def dispatch_sections(tmp: Path, kafka: KafkaConfig) -> dict[str, object]:
    return {
        "kafka": kafka.model_dump(),
        "dispatch": {
            "app_id": f"centre-{uuid.uuid4().hex[:8]}",
            "datadir": str(tmp / "faust"),
            "session_timeout_s": 6.0,
        },
        "store": {"url": f"sqlite:///{tmp / 'cases.db'}"},
        "dedup": {"coalesce_s": 1.0},
    }


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    """Its own Tansu (this test freezes it) and mosquitto, and a dispatch worker."""
    (tmp_path / "brokers").mkdir()
    tansu = start_tansu(tmp_path / "brokers")
    mosquitto = start_mosquitto(tmp_path / "brokers")
    kafka = fresh_kafka(tansu.address)
    asyncio.run(ensure_topics(kafka))
    path = tmp_path / "dispatch.json"
    path.write_text(json.dumps(dispatch_sections(tmp_path, kafka)))
    dispatch = Child(
        "dispatch",
        [sys.executable, "-m", "streetwatch.cli", "dispatch", "--config", str(path)],
        log=tmp_path / "dispatch.log",
    )
    try:
        yield Centre(tmp_path, tansu, mosquitto, kafka, dispatch)
    finally:
        dispatch.stop()
        mosquitto.stop()
        os.kill(tansu.child.pid, signal.SIGCONT)  # in case the test stopped while frozen
        tansu.stop()


class Sensors:
    """A connected MQTT client that sends smoke detectors' readings (QoS 1)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sm-{uuid.uuid4().hex[:6]}"
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def alarm(self, device: str, seq: int) -> None:
        """One "alarm" reading; returns as soon as the broker acknowledged it."""
        body = {"state": "alarm", "ts": datetime.now(UTC).isoformat(), "seq": seq, "battery": 80}
        info = self.client.publish(f"neuron/t1/smoke/{device}/up", json.dumps(body), qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def outbox_rows(path: Path, lane: str = "alerts") -> int:
    """Entries waiting in a lane of the edge's outbox, read from the file as another
    process would."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = db.execute("SELECT count(*) FROM outbox WHERE lane = ?", (lane,)).fetchone()
        return int(n)
    finally:
        db.close()


def camera_raised(centre: Centre) -> int:
    """How many alerts the edge's camera says it raised (its ``camera_finished`` line)."""
    log = (centre.tmp / "edge.log").read_text(errors="replace")
    found = re.findall(r"event=camera_finished camera=cam-vtest .*? alerts=(\d+)", log)
    assert found, "the camera has not finished"
    return int(found[-1])


def alerts_of(topic: Topic) -> dict[str, Alert]:
    """Every alert on the alerts topic, by id (a re-sent alert is there twice)."""
    return {a.alert_id: a for a in (Alert.model_validate_json(m) for m in topic.messages)}


async def delivered(
    alerts: Topic, dispatch: Topic, raised: int
) -> tuple[dict[str, Alert], dict[str, Case]]:
    """Once ``raised`` alerts are on the alerts topic: them, and the cases they made."""
    await until(
        lambda: len(alerts_of(alerts)) >= raised, "every alert raised on the alerts topic", 60
    )
    seen = alerts_of(alerts)
    await dispatch.wait_for_alerts(seen.values(), timeout=120)
    return seen, dispatch.cases()


def duplicated(alerts: dict[str, Alert], cases: dict[str, Case]) -> int:
    """Alerts folded more than once: a case counting more alerts than it has ids."""
    extra = 0
    for case in cases.values():
        ids = [
            a
            for a in alerts.values()
            if a.category == case.category and a.place.place_id in case.place_ids
        ]
        extra += max(0, case.alert_count - len(ids))
    return extra


async def test_the_kafka_broker_frozen_for_a_minute_loses_and_doubles_nothing(
    centre: Centre,
) -> None:
    devices = [f"sm-{i:02d}" for i in range(10)]
    edge = centre.edge(devices, camera=True)
    k = centre.kafka
    try:
        async with Topic(k, k.alerts_topic) as alerts, Topic(k, k.dispatch_topic) as dispatch:
            await until(lambda: centre.ready("edge"), "the edge ready", timeout=90)
            sensors = Sensors(centre.mosquitto.port)
            for seq, device in enumerate(devices[:5]):
                await asyncio.to_thread(sensors.alarm, device, seq)
            await until(lambda: len(dispatch.cases()) >= 6, "the first cases", timeout=90)

            os.kill(centre.tansu.child.pid, signal.SIGSTOP)
            frozen_at = datetime.now(UTC)
            for seq, device in enumerate(devices[5:], start=5):
                await asyncio.to_thread(sensors.alarm, device, seq)
            sensors.close()
            await asyncio.sleep(OUTAGE_S / 2)
            waiting_mid = outbox_rows(centre.outbox)
            await asyncio.sleep(OUTAGE_S / 2)
            waiting = outbox_rows(centre.outbox)
            os.kill(centre.tansu.child.pid, signal.SIGCONT)
            thawed_at = datetime.now(UTC)
            resumed = time.monotonic()

            await until(lambda: outbox_rows(centre.outbox) == 0, "the outbox emptied", 120)
            recovery = time.monotonic() - resumed
            assert edge.stop(timeout=60) == 0  # SIGTERM: the camera ends, the outbox drains
            assert outbox_rows(centre.outbox) == 0
            seen, cases = await delivered(alerts, dispatch, camera_raised(centre) + len(devices))
    finally:
        edge.stop()

    smoke = {c.place.place_id: c for c in cases.values() if c.category == "smoke_alarm"}
    parking = [c for c in cases.values() if c.category == "illegal_parking"]
    camera_alerts = sorted(
        (a for a in seen.values() if a.category == "illegal_parking"), key=lambda a: a.observed_at
    )
    # the cameras went on analysing: alerts raised during the outage waited on disk
    assert waiting >= 5 + 1 and waiting >= waiting_mid, (waiting_mid, waiting)
    during = [a for a in camera_alerts if frozen_at <= a.observed_at <= thawed_at]
    assert len(during) >= OUTAGE_S / REPEAT_S - 3, [a.observed_at for a in camera_alerts]
    # nothing lost: every smoke alarm is a case, every alert the camera raised (by its
    # own count) reached the topic, and the van's alerts have no gap
    assert sorted(smoke) == devices
    assert len(camera_alerts) == camera_raised(centre)
    gaps = [
        (b.observed_at - a.observed_at).total_seconds()
        for a, b in itertools.pairwise(camera_alerts)
    ]
    assert max(gaps) <= REPEAT_S + 3.0, gaps
    # nothing doubled: one case per problem, each alert folded once
    assert len(parking) == 1 and parking[0].alert_count == len(camera_alerts)
    assert all(c.alert_count == 1 for c in smoke.values())
    doubled = duplicated(seen, cases)
    assert doubled == 0
    record(
        FaultRow(
            f"Kafka broker frozen {OUTAGE_S:.0f} s (SIGSTOP); cameras and sensors raising",
            alerts_raised=len(seen),
            cases_delivered=len(cases),
            lost=len(devices) - len(smoke) + camera_raised(centre) - len(camera_alerts),
            duplicated=doubled,
            recovery_s=recovery,
        )
    )


async def test_an_edge_started_while_kafka_is_down_analyses_and_delivers_later(
    centre: Centre,
) -> None:
    """A box rebooting in a centre outage: it must not wait for Kafka to analyse."""
    devices = [f"sm-{i:02d}" for i in range(3)]
    k = centre.kafka
    os.kill(centre.tansu.child.pid, signal.SIGSTOP)  # hangs, as a broker behind a dead link
    frozen_at = datetime.now(UTC)
    edge = centre.edge(devices, camera=True)
    try:
        await until(lambda: centre.ready("edge"), "the edge ready without Kafka", timeout=60)
        sensors = Sensors(centre.mosquitto.port)
        for seq, device in enumerate(devices):
            await asyncio.to_thread(sensors.alarm, device, seq)
        sensors.close()
        # the van stands from about 9 s into vtest: the parking rule raises meanwhile
        await until(lambda: outbox_rows(centre.outbox) >= len(devices) + 2, "alerts kept", 90)
        # longer than one connection attempt (edge/worker.py CONNECT_ATTEMPT_S): it says so
        await asyncio.sleep(max(0.0, 25 - (datetime.now(UTC) - frozen_at).total_seconds()))
        waiting = outbox_rows(centre.outbox)
        os.kill(centre.tansu.child.pid, signal.SIGCONT)
        thawed_at = datetime.now(UTC)
        resumed = time.monotonic()
        async with Topic(k, k.alerts_topic) as alerts, Topic(k, k.dispatch_topic) as dispatch:
            await until(lambda: outbox_rows(centre.outbox) == 0, "the outbox emptied", 180)
            recovery = time.monotonic() - resumed
            assert edge.stop(timeout=60) == 0
            seen, cases = await delivered(alerts, dispatch, camera_raised(centre) + len(devices))
    finally:
        os.kill(centre.tansu.child.pid, signal.SIGCONT)
        edge.stop()
    log = (centre.tmp / "edge.log").read_text(errors="replace")
    assert "event=kafka_unreachable" in log and "event=kafka_connected" in log
    smoke = {c.place.place_id: c for c in cases.values() if c.category == "smoke_alarm"}
    parking = [c for c in cases.values() if c.category == "illegal_parking"]
    camera_alerts = [a for a in seen.values() if a.category == "illegal_parking"]
    # analysed and raised while Kafka was out of reach
    assert any(frozen_at <= a.observed_at <= thawed_at for a in camera_alerts)
    assert sorted(smoke) == devices
    assert len(camera_alerts) == camera_raised(centre)
    assert len(parking) == 1 and parking[0].alert_count == len(camera_alerts)
    doubled = duplicated(seen, cases)
    assert doubled == 0
    record(
        FaultRow(
            f"edge started with Kafka frozen (SIGSTOP); {waiting} alerts kept, then thawed",
            alerts_raised=len(seen),
            cases_delivered=len(cases),
            lost=len(devices) - len(smoke) + camera_raised(centre) - len(camera_alerts),
            duplicated=doubled,
            recovery_s=recovery,
        )
    )


@pytest.mark.parametrize("after_s", [0.0, 0.02, 0.03, 0.05, 0.3])
async def test_the_edge_killed_right_after_a_one_off_alarm_gives_exactly_one_case(
    centre: Centre, after_s: float
) -> None:
    k = centre.kafka
    async with Topic(k, k.dispatch_topic) as dispatch:
        edge = centre.edge(["sm-kill"], camera=False)
        sensors = Sensors(centre.mosquitto.port)
        try:
            await until(lambda: centre.ready("edge"), "the edge ready", timeout=90)
            sensors.alarm("sm-kill", 1)  # the intake has it, or is about to
            time.sleep(after_s)
        finally:
            os.killpg(edge.pid, signal.SIGKILL)  # the box, its sensor processes with it
            edge.stop()
            sensors.close()
        killed = time.monotonic()
        again = centre.edge(["sm-kill"], camera=False, name="edge-again")
        try:
            await until(lambda: len(dispatch.cases()) >= 1, "the alarm's case", timeout=120)
            recovery = time.monotonic() - killed
            await asyncio.sleep(5)  # room for a second case or a second fold (coalesce_s 1)
            cases = dispatch.cases()
        finally:
            again.stop()
    (case,) = cases.values()
    assert case.category == "smoke_alarm" and case.alert_count == 1, case
    record(
        FaultRow(
            f"edge SIGKILLed {after_s:g} s after a one-off smoke alarm, restarted",
            alerts_raised=1,
            cases_delivered=len(cases),
            lost=1 - len(cases),
            duplicated=case.alert_count - 1,
            recovery_s=recovery,
        )
    )


def stored_file(store: Path, sha256: str) -> Path:
    return store / sha256[:2] / sha256[2:4] / sha256


async def test_the_evidence_service_down_for_a_minute_holds_no_alert_back(
    centre: Centre,
) -> None:
    """Alerts reach the dispatch topic while the evidence service is down; once it is
    up, every snapshot and clip the alerts name is uploaded and matches its sha256."""
    uploads, store = centre.evidence_service()
    edge = centre.edge(
        [],
        camera=True,
        evidence=uploads,
    )
    k = centre.kafka
    service: Child | None = None
    try:
        async with Topic(k, k.alerts_topic) as alerts, Topic(k, k.dispatch_topic) as dispatch:
            await until(lambda: centre.ready("edge"), "the edge ready", timeout=90)
            down_from = time.monotonic()
            await until(lambda: len(dispatch.cases()) >= 1, "a case, evidence down", 90)
            assert outbox_rows(centre.outbox, "evidence") >= 1
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_from)))
            waiting = outbox_rows(centre.outbox, "evidence")
            service = centre.start_evidence_service()
            up = time.monotonic()
            await until(lambda: outbox_rows(centre.outbox, "evidence") == 0, "uploads", 120)
            recovery = time.monotonic() - up
            assert edge.stop(timeout=60) == 0
            assert outbox_rows(centre.outbox, "evidence") == 0
            await until(lambda: len(alerts_of(alerts)) >= camera_raised(centre), "every alert", 60)
            seen = alerts_of(alerts)
            await dispatch.wait_for_alerts(seen.values(), timeout=120)
            cases = dispatch.cases()
    finally:
        edge.stop()
        if service is not None:
            service.stop()
    files = {e.sha256: e for a in seen.values() for e in a.evidence}
    kinds = {e.kind for e in files.values()}
    assert {"snapshot", "clip"} <= kinds and waiting >= 2
    missing = [
        sha
        for sha in files
        if not stored_file(store, sha).is_file()
        or hashlib.sha256(stored_file(store, sha).read_bytes()).hexdigest() != sha
    ]
    assert missing == []
    assert len(cases) == 1 and next(iter(cases.values())).alert_count == len(seen)
    record(
        FaultRow(
            f"evidence service down {OUTAGE_S:.0f} s ({len(files)} snapshots and clips "
            "uploaded after, each verified by sha256)",
            alerts_raised=len(seen),
            cases_delivered=len(cases),
            lost=len(missing),
            duplicated=0,
            recovery_s=recovery,
        )
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs: the edge box's evidence disk, nearly full."""
    disk = tmp_path / "edge-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (run as root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_the_edge_disk_nearly_full_drops_no_alert_and_says_so(
    centre: Centre, small_disk: Path
) -> None:
    """Evidence waits for the centre and fills the disk past its floor: a health alert;
    once the centre has the files, the oldest go, the space is back, it clears."""
    floor_mb = 8.0
    free = shutil.disk_usage(small_disk).free
    ballast = free - int((floor_mb + 0.4) * 1024 * 1024)  # a few snapshots over the floor
    (small_disk / "ballast").write_bytes(b"\0" * ballast)
    uploads, store = centre.evidence_service()
    edge = centre.edge(
        [],
        camera=True,
        evidence={
            "evidence_dir": str(small_disk / "evidence"),
            "min_free_mb": floor_mb,
            "disk_check_s": 1.0,
            **uploads,
        },
    )
    k = centre.kafka
    service: Child | None = None

    def health() -> Case | None:
        return next((c for c in dispatch.cases().values() if c.category == "edge_disk_low"), None)

    try:
        async with Topic(k, k.alerts_topic) as alerts, Topic(k, k.dispatch_topic) as dispatch:
            await until(lambda: centre.ready("edge"), "the edge ready", timeout=90)
            await until(lambda: health() is not None, "the disk-low health alert", 120)
            service = centre.start_evidence_service()
            back = time.monotonic()
            await until(
                lambda: (c := health()) is not None and c.cleared_at is not None,
                "the health alert cleared",
                120,
            )
            recovery = time.monotonic() - back
            assert edge.stop(timeout=60) == 0
            await until(
                lambda: (
                    len([a for a in alerts_of(alerts).values() if a.source_kind == "camera"])
                    >= camera_raised(centre)
                ),
                "every camera alert",
                60,
            )
            seen = alerts_of(alerts)
            await dispatch.wait_for_alerts(seen.values(), timeout=120)
            cases = dispatch.cases()
    finally:
        edge.stop()
        if service is not None:
            service.stop()
    camera = [a for a in seen.values() if a.source_kind == "camera"]
    log = (centre.tmp / "edge.log").read_text(errors="replace")
    assert "event=evidence_evicted" in log  # uploaded evidence made room
    assert len(camera) == camera_raised(centre)  # no alert dropped
    files = {e.sha256 for a in camera for e in a.evidence}
    missing = [sha for sha in files if not stored_file(store, sha).is_file()]
    assert missing == []  # what was deleted on the box is at the centre
    parking = [c for c in cases.values() if c.category == "illegal_parking"]
    assert len(parking) == 1 and parking[0].alert_count == len(camera)
    record(
        FaultRow(
            "edge disk nearly full (32 MB tmpfs, 8 MB floor; evidence service down first): "
            "health alert raised then cleared, uploaded evidence evicted",
            alerts_raised=len(seen),
            cases_delivered=len(cases),
            lost=camera_raised(centre) - len(camera) + len(missing),
            duplicated=0,
            recovery_s=recovery,
        )
    )
