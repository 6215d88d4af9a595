"""GeoReport v2 (Open311) client: file a case as a service request, read statuses back.

The calls follow the GeoReport v2 spec (JSON format):

- ``POST {endpoint}/requests.json``, form-encoded (``service_code``, ``lat``,
  ``long``, ``address_string``, ``description``, ``media_url``, ``api_key``,
  ``jurisdiction_id``, ``attribute[case_id]``). The answer is
  ``[{"service_request_id": ...}]`` or, for servers that file in batches,
  ``[{"token": ...}]``, resolved with ``GET {endpoint}/tokens/{token}.json``.
- ``GET {endpoint}/requests.json?service_request_id=a,b`` for statuses
  (``open`` / ``closed`` with ``status_notes``).
- Errors come as HTTP 4xx/5xx with ``[{"code": .., "description": ..}]``.

Every POST carries ``Idempotency-Key: <case_id>``, so a retry after a lost
answer files nothing new on servers that honour it. Connection failures,
timeouts, 5xx and 429 are retried with exponential backoff (``backoff_s``
doubling, ``retries`` times); other 4xx are refusals and are not retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import PurePosixPath
from typing import NamedTuple
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import aiohttp

from core.records import Case, EvidenceKind
from pipeline.config import Open311Config

log = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 4000  # characters, per the spec
MAX_DELAY_S = 60.0  # one retry never waits longer than this (also caps Retry-After)
STATUS_BATCH = 50  # ids per GET requests.json
URGENCY_WORDS = {1: "特急 most urgent", 2: "紧急 urgent", 3: "一般 normal", 4: "常规 routine"}


class Open311Error(Exception):
    """Something went wrong talking to the GeoReport server."""


class Open311Unavailable(Open311Error):
    """The server could not be reached or kept failing (5xx, 429): try again later."""


class Open311Refused(Open311Error):
    """A request that will not succeed as it is: retrying it unchanged is pointless."""

    counter = "refused"


class UnmappedCategory(Open311Refused):
    """The case's category has no service_code in ``[open311] service_codes``."""

    counter = "unmapped"

    def __init__(self, category: str) -> None:
        self.category = category
        super().__init__(
            f"no service_code for category {category!r}: "
            f'add it to [open311] service_codes, e.g. {category} = "<code>"'
        )


class Open311Rejected(Open311Refused):
    """The server answered 4xx (other than 429): the spec's errors are in the message."""

    counter = "rejected"

    def __init__(self, what: str, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{what}: HTTP {status}: {detail}")


class Open311BadResponse(Open311Refused):
    """The server said yes (2xx) but its answer is not what the spec describes."""

    counter = "bad_response"


@dataclass(frozen=True)
class Submitted:
    """What a POST gave back: the request id, or a token to resolve it later."""

    service_request_id: str | None
    token: str | None
    service_notice: str = ""


class RemoteStatus(NamedTuple):
    """A service request's state on the server."""

    status: str  # open | closed
    notes: str  # status_notes
    updated_at: datetime | None  # updated_datetime: for closed, when it was closed
    agency: str  # agency_responsible


Sleep = Callable[[float], Awaitable[None]]


class Open311Client:
    """Talks GeoReport v2 to one endpoint; ``counts`` tallies what happened."""

    def __init__(
        self,
        cfg: Open311Config,
        session: aiohttp.ClientSession,
        *,
        tz: tzinfo | None = None,
        evidence_root: str = "",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``tz``: zone of the times in descriptions (default Asia/Shanghai).
        ``evidence_root``: evidence paths under it are published relative to it."""
        if not cfg.endpoint:
            raise ValueError("[open311] endpoint is empty: set the GeoReport v2 base URL")
        self.cfg = cfg
        self.session = session
        self.base = cfg.endpoint.rstrip("/")
        self.tz = tz or ZoneInfo("Asia/Shanghai")
        self.evidence_root = evidence_root
        self._sleep = sleep
        self.counts: Counter[str] = Counter()

    # ---- building the request -------------------------------------------------

    def service_code(self, case: Case) -> str:
        code = self.cfg.service_codes.get(case.category)
        if not code:
            raise UnmappedCategory(case.category)
        return code

    def media_url(self, case: Case) -> str | None:
        """The first still picture of the case: its link to the evidence service if the
        case event carried one, else its path under ``media_base_url``, if set."""
        for ev in case.evidence:
            if ev.kind is EvidenceKind.SNAPSHOT:
                if ev.url:
                    return ev.url
                if self.cfg.media_base_url:
                    base = self.cfg.media_base_url.rstrip("/")
                    return f"{base}/{self._media_path(ev.path)}"
                return None
        return None

    def _media_path(self, path: str) -> str:
        p = PurePosixPath(path.replace("\\", "/"))
        root = PurePosixPath(self.evidence_root) if self.evidence_root else None
        if root is not None and p.is_relative_to(root):
            p = p.relative_to(root)
        parts = [part for part in p.parts if part not in ("/", "..", ".")]
        return "/".join(quote(part, safe="") for part in parts)

    def description(self, case: Case) -> str:
        place = case.place.name or case.place.place_id
        lines = [
            f"类别 Category: {case.category}",
            f"地点 Place: {place} ({case.place.place_id}, site {case.site_id})",
            "规则 Rules: " + "; ".join(case.rule_texts),
            f"首次发现 First seen: {self._time(case.first_seen)}",
            f"最近发现 Last seen: {self._time(case.last_seen)}",
            f"告警 Alerts: {case.alert_count}, 置信度 confidence {case.confidence:.2f}"
            + (", 视频与传感器互证 video and sensors agree" if case.corroborated else ""),
        ]
        if case.route is not None:
            r = case.route
            lines.append(f"紧急程度 Urgency: {r.urgency} ({URGENCY_WORDS.get(r.urgency, '')})")
            owner = f"主管部门 Owner: {r.owner}"
            if r.assisting:
                owner += f"; 协办 Assisting: {', '.join(r.assisting)}"
            lines.append(owner)
        recurrence = f" (第 {case.recurrence} 次 recurrence {case.recurrence})"
        lines.append(f"案件 Case: {case.case_id}" + (recurrence if case.recurrence > 1 else ""))
        text = "\n".join(lines)
        return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"

    def _time(self, t: datetime) -> str:
        return t.astimezone(self.tz).isoformat(sep=" ", timespec="seconds")

    def request_form(self, case: Case) -> list[tuple[str, str]]:
        """The POST fields for ``case``; :class:`UnmappedCategory` if it has no service_code."""
        form = [("service_code", self.service_code(case))]
        if case.place.lat is not None and case.place.lon is not None:
            form += [("lat", repr(case.place.lat)), ("long", repr(case.place.lon))]
        form.append(("address_string", case.place.name or case.place.place_id))
        form.append(("description", self.description(case)))
        media = self.media_url(case)
        if media:
            form.append(("media_url", media))
        if self.cfg.api_key:
            form.append(("api_key", self.cfg.api_key))
        if self.cfg.jurisdiction_id:
            form.append(("jurisdiction_id", self.cfg.jurisdiction_id))
        form.append(("attribute[case_id]", case.case_id))
        return form

    # ---- calls ----------------------------------------------------------------

    async def submit(self, case: Case) -> Submitted:
        """POST the case once (retrying transient failures); the id or a token."""
        form = self.request_form(case)  # UnmappedCategory before anything is sent
        body = await self._call(
            "POST",
            "requests.json",
            f"POST case {case.case_id}",
            data=urlencode(form).encode("utf-8"),
            headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Idempotency-Key": case.case_id,
            },
        )
        first = _first_item(body, f"POST case {case.case_id}")
        rid, token = _str_or_none(first.get("service_request_id")), _str_or_none(first.get("token"))
        if rid is None and token is None:
            raise Open311BadResponse(
                f"POST case {case.case_id}: the answer has neither service_request_id "
                f"nor token: {_short(body)}"
            )
        self.counts["posted"] += 1
        notice = first.get("service_notice")
        return Submitted(rid, token, notice if isinstance(notice, str) else "")

    async def resolve_token(self, token: str) -> str | None:
        """The service_request_id behind ``token``, or None while the server has none yet."""
        body = await self._call(
            "GET", f"tokens/{quote(token, safe='')}.json", f"GET token {token}", params=self._jur()
        )
        if isinstance(body, list) and not body:
            return None
        return _str_or_none(_first_item(body, f"GET token {token}").get("service_request_id"))

    async def post_request(self, case: Case) -> str:
        """POST the case and return its service_request_id, waiting out a token."""
        sub = await self.submit(case)
        if sub.service_request_id is not None:
            return sub.service_request_id
        assert sub.token is not None
        for attempt in range(self.cfg.retries + 1):
            rid = await self.resolve_token(sub.token)
            if rid is not None:
                return rid
            if attempt < self.cfg.retries:
                await self._sleep(self.delay(attempt))
        raise Open311Unavailable(
            f"case {case.case_id}: token {sub.token} had no service_request_id "
            f"after {self.cfg.retries + 1} tries"
        )

    async def statuses(self, ids: Sequence[str]) -> dict[str, RemoteStatus]:
        """The status of each request in ``ids`` the server knows (missing ones are left out)."""
        out: dict[str, RemoteStatus] = {}
        for i in range(0, len(ids), STATUS_BATCH):
            chunk = ids[i : i + STATUS_BATCH]
            params = {"service_request_id": ",".join(chunk), **self._jur()}
            body = await self._call("GET", "requests.json", "GET requests", params=params)
            for item in _items(body, "GET requests"):
                rid = _str_or_none(item.get("service_request_id"))
                if rid is None or rid not in chunk:
                    continue
                status = item.get("status")
                notes = item.get("status_notes")
                agency = item.get("agency_responsible")
                out[rid] = RemoteStatus(
                    status=status if isinstance(status, str) else "",
                    notes=notes if isinstance(notes, str) else "",
                    updated_at=_aware(item.get("updated_datetime")),
                    agency=agency if isinstance(agency, str) else "",
                )
        return out

    # ---- transport ------------------------------------------------------------

    def _jur(self) -> dict[str, str]:
        return {"jurisdiction_id": self.cfg.jurisdiction_id} if self.cfg.jurisdiction_id else {}

    def delay(self, attempt: int) -> float:
        """The wait before retry ``attempt + 1``: ``backoff_s`` doubling, at most a minute."""
        return min(MAX_DELAY_S, self.cfg.backoff_s * 2.0**attempt)

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> object:
        """One call with retries; the decoded JSON answer of a 2xx."""
        url = f"{self.base}/{path}"
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        hdrs = {"Accept": "application/json", **(headers or {})}
        last = ""
        for attempt in range(self.cfg.retries + 1):
            retry_after = 0.0
            try:
                async with self.session.request(
                    method, url, data=data, params=params, headers=hdrs, timeout=timeout
                ) as resp:
                    text = await resp.text(encoding="utf-8", errors="replace")
                    if 200 <= resp.status < 300:
                        try:
                            return json.loads(text)
                        except json.JSONDecodeError:
                            raise Open311BadResponse(
                                f"{what}: HTTP {resp.status} but not JSON: {text[:200]!r}"
                            ) from None
                    detail = _error_detail(text)
                    if resp.status != 429 and resp.status < 500:
                        self.counts["rejected"] += 1
                        raise Open311Rejected(what, resp.status, detail)
                    last = f"HTTP {resp.status}: {detail}"
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt == self.cfg.retries:
                break
            delay = max(self.delay(attempt), min(retry_after, MAX_DELAY_S))
            self.counts["retries"] += 1
            log.warning(
                "open311 %s failed (%s); retry %d/%d in %.2fs",
                what,
                last,
                attempt + 1,
                self.cfg.retries,
                delay,
            )
            await self._sleep(delay)
        self.counts["unavailable"] += 1
        raise Open311Unavailable(
            f"{what}: gave up after {self.cfg.retries + 1} attempts to {url}; last: {last}"
        )


def _str_or_none(value: object) -> str | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def _items(body: object, what: str) -> list[Mapping[str, object]]:
    """The request objects of an answer: a JSON array, or one wrapped under a key."""
    if isinstance(body, dict):
        for key in ("service_requests", "requests", "request"):
            if key in body:
                body = body[key]
                break
        else:
            body = [body]
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
        raise Open311BadResponse(f"{what}: expected a JSON array of objects: {_short(body)}")
    return body


def _first_item(body: object, what: str) -> Mapping[str, object]:
    items = _items(body, what)
    if not items:
        raise Open311BadResponse(f"{what}: empty answer")
    return items[0]


def _short(body: object) -> str:
    return json.dumps(body, ensure_ascii=False)[:200]


def _error_detail(text: str) -> str:
    """The spec's ``[{"code", "description"}]`` as one line, else the start of the body."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()[:200] or "(empty body)"
    errors = body if isinstance(body, list) else [body]
    parts = [
        f"{e.get('code', '?')} {e.get('description', '')}".strip()
        for e in errors
        if isinstance(e, dict)
    ]
    return "; ".join(parts) if parts else _short(body)


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


def _aware(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None
