"""Video-patrol staff at work in the review workbench, in Debian's Chromium.

Every part is real and running: Tansu, the evidence service, the dispatch
worker (SQLite case store), the workbench (`streetwatch review serve`) and an
edge box (`streetwatch edge`) on vtest.avi, looping, with two parking zones:
the van's place and the car's place. Two reviewers of the same workstation
sign in. The van's case arrives live (the "N new" bar, no reload); its
annotated snapshot shows and its H.264 clip plays. The second reviewer sees
the first one's claim. The first rejects it as a wrong object with a mask
drawn on the snapshot: the rejection reaches the case store and the dispatch
topic, the suppression reaches the running edge box, which raises nothing
more for the van while the car's place still alerts. The car's case is
confirmed with one key and is dispatched on the dispatch topic; two sensor
cases are merged. The rejected frame is exported as a YOLO hard negative.
Screenshots of the queue and a case page (zh-CN) are saved in
``var/screenshots/``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Page

from centre.evidence_service import new_token, token_digest
from centre.evidence_store import FilesystemEvidenceStore
from centre.review.dataset import check_layout
from core.kafka import ensure_topics
from core.records import (
    Alert,
    AlertPhase,
    CameraSuppressions,
    Case,
    CaseStatus,
    EvidenceKind,
    GridRef,
    Place,
    SensorReading,
    SourceKind,
    SuppressionKind,
)
from streetwatch.brokers import RunningBroker
from streetwatch.processes import Child, free_port, wait_for_port
from tests.support import review
from tests.support.browser import async_chromium
from tests.support.kafka_helpers import Topic, fresh_kafka
from tests.support.paths import ROOT
from tests.support.polling import until

pytestmark = pytest.mark.integration

GRID = "曹杨新村街道"
VAN_ZONE = [[600, 55], [728, 55], [728, 130], [600, 130]]  # the van's foot: (688, 98)
CAR_ZONE = [[729, 55], [768, 55], [768, 130], [729, 130]]  # the car's foot: (750, 95)
#: clicked on the snapshot (fractions of it): around the van, clear of the car's foot
MASK_CLICKS = [(0.76, 0.06), (0.955, 0.06), (0.955, 0.28), (0.76, 0.28)]
SCREENSHOTS = ROOT / "var" / "screenshots"


def cli(name: str, tmp: Path, *args: str) -> Child:
    return Child(name, [sys.executable, "-m", "streetwatch.cli", *args], log=tmp / f"{name}.log")


def write_configs(tmp: Path, kafka_cfg: object, video: Path, evidence_port: int) -> None:
    from core.kafka import KafkaConfig

    assert isinstance(kafka_cfg, KafkaConfig)
    kafka = kafka_cfg.model_dump()
    secret = tmp / "link.key"
    secret.write_text(secrets.token_hex(32))
    token = new_token()
    (tmp / "box.token").write_text(token)
    url = f"http://127.0.0.1:{evidence_port}"
    rule = {"type": "illegal_parking", "dwell_s": 2.0, "repeat_every_s": 3.0}
    grids = {"large": GRID}
    files = {
        "centre.json": {
            "evidence": {
                "port": evidence_port,
                "store_dir": str(tmp / "store"),
                "secret_file": str(secret),
                "boxes": [{"box_id": "ws-review", "token_sha256": token_digest(token)}],
            }
        },
        "dispatch.json": {
            "kafka": kafka,
            "dispatch": {
                "app_id": f"centre-{tmp.name}",
                "datadir": str(tmp / "faust"),
                "session_timeout_s": 6.0,
            },
            "store": {"url": f"sqlite:///{tmp / 'cases.db'}"},
            "evidence_links": {"base_url": url, "secret_file": str(secret)},
        },
        "edge.json": {
            "edge": {
                "box_id": "ws-review",
                "evidence_dir": str(tmp / "edge-evidence"),
                "outbox": str(tmp / "outbox.db"),
                "evidence_url": url,
                "evidence_token_file": str(tmp / "box.token"),
            },
            "kafka": kafka,
            "places": [
                {"place_id": "bay-van", "name": "装卸区 货车位", "grids": grids},
                {"place_id": "bay-car", "name": "装卸区 轿车位", "grids": grids},
            ],
            "cameras": [
                {
                    "camera_id": "cam-vtest",
                    "url": str(video),
                    "analysis_fps": 2.0,
                    "loop": True,
                    "clip": {"enabled": True, "pre_s": 2.0, "post_s": 2.0},
                    "zones": [
                        {"zone_id": "van", "place": "bay-van", "polygon": VAN_ZONE},
                        {"zone_id": "car", "place": "bay-car", "polygon": CAR_ZONE},
                    ],
                    "rules": [
                        {**rule, "rule_id": "van-parking", "zone": "van"},
                        {**rule, "rule_id": "car-parking", "zone": "car"},
                    ],
                }
            ],
        },
    }
    for name, body in files.items():
        (tmp / name).write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")


def sensor_alert(place: str, device: str, now: datetime) -> Alert:
    reading = SensorReading(
        device_id=device,
        device_type="water_level",
        value=0.42,
        unit="m",
        received_at=now,
    )
    return Alert(
        alert_id=f"alert-{device}-{now.timestamp():.0f}",
        category="water_level_high",
        place=Place(place_id=place, name=f"{place} 下立交", grids=GridRef(large=GRID)),
        source_kind=SourceKind.SENSOR,
        source_id=device,
        rule_id="wl-high",
        rule_text="water level >= 0.3 m",
        first_seen=now,
        observed_at=now,
        confidence=0.9,
        phase=AlertPhase.RAISED,
        readings=(reading,),
    )


async def sign_in(page: Page, base: str, user: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill('input[name="username"]', user)
    await page.fill('input[name="password"]', review.PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(f"{base}/")
    await page.wait_for_function("document.body.classList.contains('live')")


def case_at(topic: Topic, place: str) -> Case | None:
    for case in topic.cases().values():
        if case.place.place_id == place:
            return case
    return None


def alerts_for(topic: Topic, place: str, after: datetime) -> list[Alert]:
    alerts = [Alert.model_validate_json(m) for m in topic.messages]
    return [a for a in alerts if a.place.place_id == place and a.observed_at > after]


async def test_patrol_staff_review_cases_and_a_rejection_silences_the_edge(
    tansu: RunningBroker, tmp_path: Path, vtest_video: Path
) -> None:
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    evidence_port = free_port()
    write_configs(tmp_path, kafka, vtest_video, evidence_port)
    store_url = f"sqlite:///{tmp_path / 'cases.db'}"
    config = review.write_config(tmp_path, kafka, store_url, tmp_path / "store")
    review.add_users(config)
    evidence_store = FilesystemEvidenceStore(tmp_path / "store")
    children: list[Child] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        service = cli(
            "evidence", tmp_path, "evidence", "serve", "--config", f"{tmp_path}/centre.json"
        )
        children.append(service)
        children.append(
            cli("dispatch", tmp_path, "dispatch", "--config", f"{tmp_path}/dispatch.json")
        )
        wait_for_port(evidence_port, 30, service.proc)
        wb = review.start(config, tmp_path / "review.log")
        children.append(wb.child)
        async with (
            Topic(kafka, kafka.dispatch_topic) as dispatch,
            Topic(kafka, kafka.alerts_topic) as alerts,
            Topic(kafka, kafka.suppression_topic) as suppressions,
            async_chromium() as browser,
        ):
            ann_ctx = await browser.new_context(
                locale="zh-CN", viewport={"width": 1440, "height": 900}
            )
            ann = await ann_ctx.new_page()
            await sign_in(ann, wb.url, "patrol1")
            assert await ann.locator("#list .card").count() == 0

            # -- a new case arrives live ------------------------------------------------
            edge = cli("edge", tmp_path, "edge", "--config", f"{tmp_path}/edge.json")
            children.append(edge)
            await ann.wait_for_selector("#new-bar:not([hidden])", timeout=120_000)
            await ann.click("#new-bar")
            await ann.wait_for_selector("#list .card")
            assert await ann.locator("#new-bar").is_hidden()

            # -- the van's case, with its snapshot and clip at the centre ------------------
            def van_ready() -> bool:
                case = case_at(dispatch, "bay-van")
                kinds = {e.kind: e for e in case.evidence} if case else {}
                return {EvidenceKind.SNAPSHOT, EvidenceKind.CLIP} <= kinds.keys() and all(
                    evidence_store.find(e.sha256) for e in kinds.values()
                )

            await until(van_ready, "the van's case with snapshot and clip at the centre", 120)
            van = case_at(dispatch, "bay-van")
            assert van is not None
            await ann.reload()
            await ann.wait_for_selector(f"#card-{van.case_id}")
            await ann.screenshot(path=SCREENSHOTS / "review-queue.zh-CN.png", full_page=True)
            await ann.goto(f"{wb.url}/cases/{van.case_id}")
            width = await ann.evaluate(
                "async () => { const i = document.getElementById('snapshot');"
                " if (!i.complete) await new Promise(r => { i.onload = r; i.onerror = r; });"
                " return i.naturalWidth; }"
            )
            assert width == 768
            played = await ann.evaluate(
                "async () => { const v = document.getElementById('clip'); await v.play();"
                " await new Promise(r => setTimeout(r, 1200));"
                " return {state: v.readyState, time: v.currentTime,"
                " error: v.error && v.error.code}; }"
            )
            assert played["error"] is None and played["state"] >= 2 and played["time"] > 0.5, played
            assert "违法停车" in await ann.inner_text("h1")
            await ann.screenshot(path=SCREENSHOTS / "review-case.zh-CN.png", full_page=True)

            # -- a second reviewer sees the claim -------------------------------------------
            bob_ctx = await browser.new_context(locale="zh-CN")
            bob = await bob_ctx.new_page()
            await sign_in(bob, wb.url, "patrol2")
            card = bob.locator(f"#card-{van.case_id} .claim")
            assert "patrol1" in await card.inner_text()
            await bob.goto(f"{wb.url}/cases/{van.case_id}")
            assert "patrol1" in await bob.inner_text("#claim.other")
            assert await bob.locator('button[value="reject"]').is_disabled()

            # -- reject with a reason and a mask -----------------------------------------
            box = await ann.locator("#mask-canvas").bounding_box()
            assert box is not None
            for fx, fy in MASK_CLICKS:
                await ann.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            assert await ann.input_value("#suppress") == "mask"
            await ann.select_option("#reason", "wrong_object")
            await ann.click("#reject")
            await ann.wait_for_url(lambda url: f"/cases/{van.case_id}" not in url)

            def rejected() -> Case | None:
                case = dispatch.cases().get(van.case_id)
                return case if case and case.status is CaseStatus.REJECTED else None

            await until(lambda: rejected() is not None, "the rejection on the dispatch topic", 30)
            done = rejected()
            assert (
                done is not None and done.reason == "wrong_object" and done.status_by == "patrol1"
            )

            def published() -> CameraSuppressions | None:
                msgs = [CameraSuppressions.model_validate_json(m) for m in suppressions.messages]
                return msgs[-1] if msgs else None

            await until(lambda: published() is not None, "the suppression on its topic", 30)
            message = published()
            assert message is not None and message.camera_id == "cam-vtest"
            (mask,) = message.suppressions
            assert mask.kind is SuppressionKind.MASK and mask.place_id == "bay-van"
            assert mask.case_id == van.case_id and mask.created_by == "patrol1"
            assert mask.labels == ()  # every class: the van is a truck one frame, a bus the next
            assert [round(x, 2) for x, _ in mask.polygon] == [0.76, 0.95, 0.95, 0.76]

            # -- the running edge box applies it: nothing more for the van, the car goes on
            edge_log = tmp_path / "edge.log"
            await until(
                lambda: (
                    "event=suppressions camera=cam-vtest revision=1 count=1"
                    in edge_log.read_text(errors="replace")
                ),
                "the edge box applying the suppression",
                30,
            )
            applied = datetime.now(UTC) + timedelta(seconds=1)
            await until(lambda: len(alerts_for(alerts, "bay-car", applied)) >= 3, "car alerts", 60)
            assert alerts_for(alerts, "bay-van", applied) == []
            assert dispatch.cases()[van.case_id].status is CaseStatus.REJECTED  # not reopened

            # -- confirm the car's case with one key; it is dispatched ------------------------
            car = case_at(dispatch, "bay-car")
            assert car is not None
            await ann.goto(f"{wb.url}/cases/{car.case_id}")
            await ann.keyboard.press("c")
            await ann.wait_for_url(lambda url: f"/cases/{car.case_id}" not in url)
            await until(
                lambda: dispatch.cases()[car.case_id].status is CaseStatus.DISPATCHED,
                "the car's case dispatched on the dispatch topic",
                30,
            )
            assert dispatch.cases()[car.case_id].status_by == "patrol1"

            # -- merge two sensor cases ------------------------------------------------------
            now = datetime.now(UTC)
            producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
            await producer.start()
            try:
                for place, device in (("well-1", "wl-1"), ("well-2", "wl-2")):
                    a = sensor_alert(place, device, now)
                    await producer.send_and_wait(
                        kafka.alerts_topic, a.to_json_bytes(), key=place.encode()
                    )
            finally:
                await producer.stop()
            await until(
                lambda: (
                    case_at(dispatch, "well-1") is not None
                    and case_at(dispatch, "well-2") is not None
                ),
                "two sensor cases",
                30,
            )
            keep, fold = case_at(dispatch, "well-1"), case_at(dispatch, "well-2")
            assert keep is not None and fold is not None
            await ann.goto(f"{wb.url}/cases/{fold.case_id}")
            await ann.fill("#merged_into", keep.case_id)
            await ann.click('button[value="merge"]')
            await until(
                lambda: dispatch.cases()[fold.case_id].status is CaseStatus.MERGED,
                "the merge on the dispatch topic",
                30,
            )
            assert dispatch.cases()[fold.case_id].merged_into == keep.case_id

            # -- the reviewed frames exported for retraining ------------------------------
            out = tmp_path / "dataset"
            argv = ["review", "export-dataset", "--config", str(config), str(out), "--confirmed"]
            exported = subprocess.run(
                [sys.executable, "-m", "streetwatch.cli", *argv],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert exported.returncode == 0, exported.stderr
            assert check_layout(out) == []
            labels = {p.stem: p.read_text() for p in out.glob("labels/*/*.txt")}
            assert set(labels) == {van.case_id, car.case_id}
            assert labels[van.case_id] == ""  # a hard negative: the detector was wrong
            assert labels[car.case_id].startswith("2 ")  # confirmed: COCO class 2, a car

            # -- the audit trail, and the English switch ------------------------------------
            await ann.goto(f"{wb.url}/cases/{van.case_id}")
            history = await ann.inner_text("table.history")
            assert "patrol1" in history and "误报" in history and "目标识别错误" in history
            await ann.click("a.lang")
            await ann.wait_for_selector("text=Rejected")
            assert "Wrong object" in await ann.inner_text("table.history")
    finally:
        for child in reversed(children):
            child.stop()
