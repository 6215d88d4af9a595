"""Evidence leaves the box: the outbox's evidence lane, uploaded to the centre.

Each entry of the lane is an :class:`~core.records.Evidence` record (its file
is on this box at ``path``). :class:`EvidenceUploader` PUTs the file to the
evidence service (``centre/evidence_service.py``) under its sha256, with this
box's bearer token. Its own lane and forwarder: a clip on a slow link never
holds back an alert.

What happens to an upload:

- 200/201: stored at the centre (201) or there already (200): done;
- no answer, 5xx, 401/403 (a token not yet configured at the centre, say):
  the batch is tried again, with backoff, until it goes through;
- 413/415/422 (too large, a type the centre refuses, bytes that do not match
  their sha256) or the file gone from the box: it can never succeed; logged
  as an error, counted in :attr:`EvidenceUploader.refused` by reason, and the
  entry leaves the lane (the alert went on its own long before).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from core.records import Evidence
from edge.outbox import Entry

log = logging.getLogger("streetwatch.edge")

FINAL = {413, 415, 422}


class UploadFailed(Exception):
    """The evidence service did not take an upload this time; the lane tries again."""


class EvidenceUploader:
    def __init__(self, base_url: str, token: str, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.uploaded = 0
        self.refused: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    async def send(self, entries: Sequence[Entry]) -> None:
        """Upload each entry's file, in order; raise :class:`UploadFailed` to be retried."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        for entry in entries:
            await self._upload(self._session, Evidence.model_validate_json(entry.value))

    async def _upload(self, session: aiohttp.ClientSession, ev: Evidence) -> None:
        try:
            data = await asyncio.to_thread(Path(ev.path).read_bytes)
        except OSError as exc:
            self._refused("file_missing", ev, exc.strerror or str(exc))
            return
        url = f"{self.base_url}/v1/evidence/{ev.sha256}"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ev.media_type}
        try:
            async with session.put(url, data=data, headers=headers) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UploadFailed(f"{url}: {type(exc).__name__}: {exc}") from exc
        if status in (200, 201):
            self.uploaded += 1
            return
        if status in FINAL:
            self._refused(f"http_{status}", ev, text[:200])
            return
        raise UploadFailed(f"{url}: HTTP {status} {text[:200]}")

    def _refused(self, reason: str, ev: Evidence, detail: str) -> None:
        self.refused[reason] += 1
        log.error(
            "event=evidence_not_uploaded reason=%s sha256=%s path=%s detail=%s",
            reason,
            ev.sha256,
            ev.path,
            detail,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
