"""The evidence service over real HTTP on 127.0.0.1: who may upload, what is kept,
and that only a signed, unexpired link to an existing sha256 reads anything."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from centre.config import EvidenceBoxConfig, EvidenceConfig
from centre.evidence_service import EvidenceService, token_digest
from core.signed_urls import signed_query
from streetwatch.processes import Child, free_port, wait_for_port

TOKEN = "box-one-upload-token-for-tests-0123456789"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"
SHA = hashlib.sha256(JPEG).hexdigest()


class Running:
    def __init__(self, service: EvidenceService, base: str, port: int) -> None:
        self.service, self.base, self.port = service, base, port

    def files(self) -> list[Path]:
        root = Path(self.service.cfg.store_dir)
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def raw_get(self, target: str) -> tuple[int, bytes]:
        """A GET with ``target`` sent byte for byte (no client normalises ``..`` away)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@pytest.fixture
async def evidence(tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    cfg = EvidenceConfig(
        port=port,
        store_dir=str(tmp_path / "store"),
        max_mb={"image/jpeg": 0.05, "video/mp4": 1.0},
        boxes=[EvidenceBoxConfig(box_id="ws-1", token_sha256=token_digest(TOKEN))],
    )
    service = EvidenceService(cfg)
    runner = web.AppRunner(service.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Running(service, cfg.base_url(), port)
    finally:
        await runner.cleanup()


async def put(
    ev: Running, body: bytes, sha: str, token: str | None = TOKEN, media: str = "image/jpeg"
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": media}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as s,
        s.put(f"{ev.base}/v1/evidence/{sha}", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def get(ev: Running, target: str) -> tuple[int, bytes]:
    return await asyncio.to_thread(ev.raw_get, target)


async def test_uploads_need_a_known_box_token(evidence: Running) -> None:
    assert (await put(evidence, JPEG, SHA, token=None))[0] == 401
    assert (await put(evidence, JPEG, SHA, token="someone-else"))[0] == 403
    assert evidence.files() == []
    assert evidence.service.refused == {"no credentials": 1, "unknown box token": 1}


async def test_a_body_that_does_not_match_its_sha256_is_refused_and_not_kept(
    evidence: Running,
) -> None:
    status, body = await put(evidence, JPEG + b"tampered", SHA)
    assert status == 422 and "sha256" in str(body["error"])
    assert evidence.files() == []


async def test_only_known_media_types_within_their_size(evidence: Running) -> None:
    html = b"<script>alert(1)</script>"
    assert (await put(evidence, html, hashlib.sha256(html).hexdigest(), media="text/html"))[
        0
    ] == 415
    big = b"\xff" * 60_000  # over the 0.05 MB allowed for JPEG here
    assert (await put(evidence, big, hashlib.sha256(big).hexdigest()))[0] == 413
    assert evidence.files() == []


async def test_the_same_file_is_kept_once_and_read_back_through_its_link(
    evidence: Running,
) -> None:
    status, first = await put(evidence, JPEG, SHA)
    assert status == 201 and first["size"] == len(JPEG) and first["sha256"] == SHA
    status, _ = await put(evidence, JPEG, SHA)
    assert status == 200
    assert len([p for p in evidence.files() if p.name == SHA]) == 1
    async with aiohttp.ClientSession() as s, s.get(str(first["url"])) as r:
        assert r.status == 200 and await r.read() == JPEG
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
    async with (
        aiohttp.ClientSession() as s,
        s.get(str(first["url"]), headers={"Range": "bytes=4-9"}) as r,
    ):
        assert r.status == 206 and await r.read() == JPEG[4:10]  # a clip can seek


async def test_a_link_reads_only_its_own_file_and_only_until_it_expires(
    evidence: Running,
) -> None:
    await put(evidence, JPEG, SHA)
    secret = evidence.service.secret
    expired = signed_query(secret, SHA, ttl_s=-1)
    assert (await get(evidence, f"/v1/evidence/{SHA}?{expired}"))[0] == 403
    other = "0" * 64
    stolen = signed_query(secret, other, ttl_s=60)
    assert (await get(evidence, f"/v1/evidence/{SHA}?{stolen}"))[0] == 403
    assert (await get(evidence, f"/v1/evidence/{SHA}"))[0] == 403  # no link at all
    good = signed_query(secret, other, ttl_s=60)
    assert (await get(evidence, f"/v1/evidence/{other}?{good}"))[0] == 404  # signed, not kept
    link = f"/v1/evidence/{SHA}?{signed_query(secret, SHA, 60)}"
    assert await get(evidence, link) == (200, JPEG)


@pytest.mark.parametrize(
    "target",
    [
        "/v1/evidence/../../../../etc/passwd",
        "/v1/evidence/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/evidence/%2e%2e/%2e%2e/etc/passwd",
        "/v1/evidence//etc/passwd",
        "/etc/passwd",
        "/v1/evidence/" + "a" * 63 + "/",
        "/v1/evidence/" + "A" * 64,
    ],
)
async def test_no_path_given_by_a_caller_reads_a_file(evidence: Running, target: str) -> None:
    await put(evidence, JPEG, SHA)
    status, body = await asyncio.to_thread(evidence.raw_get, target)
    assert status == 404, (status, body[:200])
    assert b"root:" not in body


def test_the_link_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    cfg = EvidenceConfig(store_dir=str(tmp_path / "store"))
    first = EvidenceService(cfg).secret
    assert EvidenceService(cfg).secret == first and len(first) >= 32
    mode = (tmp_path / "store" / ".link-secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.integration  # a streetwatch process
def test_streetwatch_evidence_serve_runs_from_an_evidence_only_file(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "centre.toml"
    path.write_text(
        f'[evidence]\nport = {port}\nstore_dir = "{tmp_path / "store"}"\n\n'
        f'[[evidence.boxes]]\nbox_id = "ws-1"\ntoken_sha256 = "{token_digest(TOKEN)}"\n'
    )
    server = Child(
        "evidence",
        [sys.executable, "-m", "streetwatch.cli", "evidence", "serve", "--config", str(path)],
        log=tmp_path / "evidence.log",
    )
    try:
        wait_for_port(port, 30, server.proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("PUT", f"/v1/evidence/{SHA}", body=JPEG, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg",
        })  # fmt: skip
        response = conn.getresponse()
        assert response.status == 201, response.read()
        link = json.loads(response.read())["url"]
        conn.close()
    finally:
        assert server.stop() == 0  # SIGTERM: a clean stop
    assert link.startswith(f"http://127.0.0.1:{port}/v1/evidence/{SHA}?exp=")
