"""The evidence service: edge boxes upload snapshots, clips and charts; people and the
dispatch system open them through expiring links.

HTTP API (aiohttp):

- ``PUT /v1/evidence/{sha256}`` with ``Authorization: Bearer <box token>`` and
  the file's ``Content-Type``: stores the body under its sha256 once. No or
  an unreadable ``Authorization`` is 401, a token of no configured box 403, a
  media type not in ``[evidence] max_mb`` 415, a body over its limit 413, a
  body whose sha256 differs 422 (nothing is kept). 201 when stored, 200 when
  the same bytes were there already; the JSON answer has ``sha256``, ``size``,
  ``media_type`` and ``url``, a link good for ``[evidence] link_ttl_s``.
- ``GET /v1/evidence/{sha256}?exp=&sig=``: the file, if the link is good
  (403 otherwise, 404 if no such file). Served with ranges (a clip seeks),
  ``nosniff`` and a sandboxing Content-Security-Policy (an SVG chart runs no
  script).
- ``GET /healthz``.

Only a 64-hex-digit sha256 names a file: any other path (``../``, an
absolute path, an encoded one) matches no route and is 404, and nothing
outside the store is ever read. Every refusal is logged with its reason and
counted (:attr:`EvidenceService.refused`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from collections import Counter
from pathlib import Path

from aiohttp import web

from centre.config import EvidenceConfig
from centre.evidence_store import BadDigest, EvidenceStore, FilesystemEvidenceStore
from core.signed_urls import signed_query, verify

log = logging.getLogger("streetwatch.evidence")

SHA = "{sha256:[0-9a-f]{64}}"
#: on stop, how long uploads and downloads under way may take to finish (aiohttp's default,
#: stated: docker/compose.yaml's stop_grace_period covers it; a cut upload is sent again)
STOP_S = 60.0
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "Cache-Control": "private, max-age=300",
    "Content-Disposition": "inline",
}


def token_digest(token: str) -> str:
    """What ``[[evidence.boxes]] token_sha256`` holds for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def link_secret(cfg: EvidenceConfig) -> bytes:
    """The key that signs links: ``secret_file``, or one made once and kept in the store."""
    path = Path(cfg.secret_file) if cfg.secret_file else Path(cfg.store_dir) / ".link-secret"
    if not path.exists() and not cfg.secret_file:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    secret = path.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 32:
        raise ValueError(f"{path}: a link secret needs at least 32 characters")
    return secret


class EvidenceService:
    def __init__(
        self, cfg: EvidenceConfig, store: EvidenceStore | None = None, secret: bytes | None = None
    ) -> None:
        self.cfg = cfg
        self.store = store or FilesystemEvidenceStore(Path(cfg.store_dir))
        self.secret = secret if secret is not None else link_secret(cfg)
        self.boxes = {b.token_sha256: b.box_id for b in cfg.boxes}
        self.limits = {t: int(mb * 1024 * 1024) for t, mb in cfg.max_mb.items()}
        self.refused: Counter[str] = Counter()
        self.stored = 0

    def link(self, sha256: str) -> str:
        """A link to ``sha256`` good for ``link_ttl_s``."""
        query = signed_query(self.secret, sha256, self.cfg.link_ttl_s)
        return f"{self.cfg.base_url()}/v1/evidence/{sha256}?{query}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=max(self.limits.values(), default=1) + 1)
        app.add_routes(
            [
                web.put(f"/v1/evidence/{SHA}", self.upload),
                web.get(f"/v1/evidence/{SHA}", self.download),
                web.get("/healthz", self.health),
            ]
        )
        return app

    def _refuse(self, status: int, reason: str, request: web.Request) -> web.Response:
        self.refused[reason] += 1
        log.warning(
            "event=evidence_refused status=%d reason=%s path=%.80s peer=%s",
            status,
            reason,
            request.path,
            request.remote,
        )
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return web.json_response({"error": reason}, status=status, headers=headers)

    def _box(self, request: web.Request) -> str | web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self._refuse(401, "no credentials", request)
        digest = token_digest(token.strip())
        for known, box in self.boxes.items():
            if hmac.compare_digest(known, digest):
                return box
        return self._refuse(403, "unknown box token", request)

    async def upload(self, request: web.Request) -> web.Response:
        box = self._box(request)
        if isinstance(box, web.Response):
            return box
        sha256 = request.match_info["sha256"]
        media_type = request.content_type
        limit = self.limits.get(media_type)
        if limit is None:
            return self._refuse(415, f"media type {media_type!r} not accepted", request)
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, f"{media_type} over {limit} bytes", request)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"{media_type} over {limit} bytes", request)
        if len(data) > limit:
            return self._refuse(413, f"{media_type} over {limit} bytes", request)
        try:
            stored = await asyncio.to_thread(self.store.put, sha256, data, media_type)
        except BadDigest:
            return self._refuse(422, "body does not match its sha256", request)
        self.stored += stored.created
        log.info(
            "event=evidence_stored box=%s sha256=%s size=%d media_type=%s new=%s",
            box,
            sha256,
            stored.size,
            stored.media_type,
            stored.created,
        )
        body = {
            "sha256": sha256,
            "size": stored.size,
            "media_type": stored.media_type,
            "url": self.link(sha256),
        }
        return web.json_response(body, status=201 if stored.created else 200)

    async def download(self, request: web.Request) -> web.StreamResponse:
        sha256 = request.match_info["sha256"]
        why = verify(
            self.secret, sha256, request.query.get("exp", ""), request.query.get("sig", "")
        )
        if why is not None:
            return self._refuse(403, f"link {why}", request)
        found = await asyncio.to_thread(self.store.find, sha256)
        if found is None:
            return self._refuse(404, "no such evidence", request)
        path, media_type = found
        return web.FileResponse(path, headers={**SECURITY_HEADERS, "Content-Type": media_type})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"stored": self.stored, "refused": dict(self.refused)})


async def serve(cfg: EvidenceConfig, stop: asyncio.Event) -> EvidenceService:
    """Run the service on ``cfg.host:cfg.port`` until ``stop`` is set."""
    service = EvidenceService(cfg)
    runner = web.AppRunner(service.app(), access_log=None, shutdown_timeout=STOP_S)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    log.info(
        "event=evidence_serving url=%s store=%s boxes=%d",
        cfg.base_url(),
        cfg.store_dir,
        len(cfg.boxes),
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return service
