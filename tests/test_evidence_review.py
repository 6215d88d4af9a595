"""A reviewer at the centre opens a case's evidence from the case event alone.

Three real processes: the edge box (`streetwatch edge`, a camera on vtest.avi
raising illegal parking with a snapshot and a clip), the evidence service
(`streetwatch evidence serve`) and the dispatch worker (`streetwatch dispatch`,
with `[evidence_links]`). Once the case event is on the dispatch topic and the
edge has uploaded its evidence, the edge's evidence folder is deleted; headless
Chromium then shows the snapshot and plays the clip using only the links the
case event carries, and every file matches its sha256 and size.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from centre.evidence_service import new_token, token_digest
from core.kafka import ensure_topics
from core.records import Case, EvidenceKind
from streetwatch.brokers import RunningBroker
from streetwatch.processes import Child, free_port, wait_for_port
from tests.support.browser import VideoState, chromium, probe_video, serve
from tests.support.edge_configs import BAY_PLACE, parking_camera
from tests.support.kafka_helpers import Topic, fresh_kafka
from tests.support.polling import until

pytestmark = pytest.mark.integration

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>case</title></head>
<body><img id="snap" src="{snapshot}"><video id="v" src="{clip}" preload="auto" muted
playsinline></video></body></html>
"""


def cli(name: str, tmp: Path, *args: str) -> Child:
    return Child(name, [sys.executable, "-m", "streetwatch.cli", *args], log=tmp / f"{name}.log")


def snapshot_shown(base_url: str, page: str) -> int:
    """The natural width of the page's snapshot once loaded (0: it did not load)."""
    with chromium() as browser:
        tab = browser.new_page()
        tab.goto(f"{base_url}/{page}", wait_until="load")
        width = tab.evaluate(
            "async () => { const i = document.getElementById('snap');"
            " if (!i.complete) await new Promise(r => { i.onload = r; i.onerror = r; });"
            " return i.naturalWidth; }"
        )
        return int(width)


def clip_played(base_url: str, page: str) -> VideoState:
    with chromium() as browser:
        return probe_video(browser, base_url, page, play_s=1.0)


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200, (r.status, await r.text())
        return await r.read()


async def test_a_reviewer_opens_the_snapshot_and_plays_the_clip_from_the_case_event(
    tansu: RunningBroker, tmp_path: Path, vtest_video: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    port = free_port()
    secret = tmp_path / "link.key"
    secret.write_text(secrets.token_hex(32))
    token = new_token()
    (tmp_path / "box.token").write_text(token)
    evidence_dir = tmp_path / "edge-evidence"
    files = {
        "centre.json": {
            "evidence": {
                "port": port,
                "store_dir": str(tmp_path / "store"),
                "secret_file": str(secret),
                "boxes": [{"box_id": "ws-review", "token_sha256": token_digest(token)}],
            }
        },
        "dispatch.json": {
            "kafka": kafka.model_dump(),
            "dispatch": {
                "app_id": f"centre-{run}",
                "datadir": str(tmp_path / "faust"),
                "session_timeout_s": 6.0,
            },
            "store": {"url": f"sqlite:///{tmp_path / 'cases.db'}"},
            "evidence_links": {"base_url": f"http://127.0.0.1:{port}", "secret_file": str(secret)},
        },
        "edge.json": {
            "edge": {
                "box_id": "ws-review",
                "evidence_dir": str(evidence_dir),
                "outbox": str(tmp_path / "outbox.db"),
                "evidence_url": f"http://127.0.0.1:{port}",
                "evidence_token_file": str(tmp_path / "box.token"),
            },
            "kafka": kafka.model_dump(),
            "places": [BAY_PLACE],
            "cameras": [parking_camera(vtest_video, repeat_s=10.0)],
        },
    }
    for name, body in files.items():
        (tmp_path / name).write_text(json.dumps(body))
    service = cli(
        "evidence", tmp_path, "evidence", "serve", "--config", str(tmp_path / "centre.json")
    )
    dispatch = cli("dispatch", tmp_path, "dispatch", "--config", str(tmp_path / "dispatch.json"))
    edge: Child | None = None
    try:
        wait_for_port(port, 30, service.proc)
        async with Topic(kafka, kafka.dispatch_topic) as topic:
            edge = cli("edge", tmp_path, "edge", "--fast", "--config", str(tmp_path / "edge.json"))

            def clipped() -> Case | None:
                for case in topic.cases().values():
                    kinds = {e.kind for e in case.evidence}
                    if {EvidenceKind.SNAPSHOT, EvidenceKind.CLIP} <= kinds:
                        return case
                return None

            await until(lambda: clipped() is not None, "a case with a snapshot and a clip", 180)
            assert edge.stop(timeout=60) == 0  # the file ends; the outbox drains
        case = clipped()
        assert case is not None
        shutil.rmtree(evidence_dir)  # only the case event is left to go by
        snapshot = next(e for e in case.evidence if e.kind is EvidenceKind.SNAPSHOT)
        clip = next(e for e in case.evidence if e.kind is EvidenceKind.CLIP)
        for ev in case.evidence:
            assert ev.url and ev.path == "", ev  # a link, and no edge path on the wire
            body = await fetch(ev.url)
            assert hashlib.sha256(body).hexdigest() == ev.sha256 and len(body) == ev.size
        page_dir = tmp_path / "reviewer"
        page_dir.mkdir()
        (page_dir / "case.html").write_text(PAGE.format(snapshot=snapshot.url, clip=clip.url))
        with serve(page_dir) as base_url:
            width = await asyncio.to_thread(snapshot_shown, base_url, "case.html")
            state = await asyncio.to_thread(clip_played, base_url, "case.html")
    finally:
        if edge is not None:
            edge.stop()
        dispatch.stop()
        service.stop()
    assert width == 768  # the annotated frame of vtest.avi
    assert state.error is None and state.ready_state >= 2 and state.played_to >= 1.0, state
