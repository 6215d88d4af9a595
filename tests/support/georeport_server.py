"""A small GeoReport v2 server on 127.0.0.1 for the Open311 tests.

Implements ``POST /requests.json`` (form-encoded), ``GET /requests.json``
(``service_request_id=a,b``) and ``GET /tokens/{token}.json`` with the
spec's JSON shapes and errors (``[{"code", "description"}]``). It honours
``Idempotency-Key``: a POST with a key seen before files nothing and answers
what the first one did. Faults on demand: :meth:`fail_next` answers the next
N calls with an HTTP error, :meth:`drop_next` files the next POST but cuts
the connection before answering, :meth:`down` closes the port and
:meth:`up` opens it again (same port).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streetwatch.processes import free_port


@dataclass
class FiledRequest:
    service_request_id: str
    form: dict[str, str]
    idempotency_key: str | None
    token: str | None = None
    status: str = "open"
    status_notes: str = ""
    requested: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self) -> dict[str, Any]:
        f = self.form
        return {
            "service_request_id": self.service_request_id,
            "status": self.status,
            "status_notes": self.status_notes or None,
            "service_name": f.get("service_code"),
            "service_code": f.get("service_code"),
            "description": f.get("description"),
            "agency_responsible": "城管中队",
            "service_notice": None,
            "requested_datetime": self.requested.isoformat(),
            "updated_datetime": self.updated.isoformat(),
            "address": f.get("address_string"),
            "lat": float(f["lat"]) if "lat" in f else None,
            "long": float(f["long"]) if "long" in f else None,
            "media_url": f.get("media_url"),
        }


def _errors(status: int, description: str) -> web.Response:
    return web.json_response([{"code": status, "description": description}], status=status)


class GeoReportServer:
    def __init__(
        self,
        *,
        service_codes: tuple[str, ...] = ("PARK", "STALL", "TRASH"),
        api_key: str = "",
        tokens: bool = False,
        token_pending_polls: int = 0,
    ) -> None:
        """``tokens``: answer POSTs with a token (a batch server); the token has an id
        after ``token_pending_polls`` GETs of it."""
        self.service_codes = service_codes
        self.api_key = api_key
        self.tokens = tokens
        self.token_pending_polls = token_pending_polls
        self.port = free_port()
        self.requests: dict[str, FiledRequest] = {}
        self.by_key: dict[str, FiledRequest] = {}
        self.by_token: dict[str, FiledRequest] = {}
        self.token_polls: dict[str, int] = {}
        self.hits: list[tuple[str, str, int]] = []  # (method, path, status) that reached us
        self.replays = 0  # POSTs answered from the idempotency keys
        self._fail: list[tuple[int, dict[str, str]]] = []
        self._drop = 0
        self._ids = itertools.count(1001)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/open311/v2"

    # ---- control ----------------------------------------------------------------

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/open311/v2/requests.json", self._post)
        app.router.add_get("/open311/v2/requests.json", self._get_requests)
        app.router.add_get("/open311/v2/tokens/{token}.json", self._get_token)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def down(self) -> None:
        """Close the port (and every open connection): clients get connection refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, n: int, status: int = 503, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._fail += [(status, headers)] * n

    def drop_next(self, n: int = 1) -> None:
        """File the next ``n`` POSTs, then cut the connection instead of answering."""
        self._drop += n

    def close_request(self, service_request_id: str, notes: str) -> None:
        req = self.requests[service_request_id]
        req.status, req.status_notes = "closed", notes
        req.updated = datetime.now(UTC)

    def posts(self, status: int = 200) -> int:
        return sum(1 for m, p, s in self.hits if m == "POST" and s == status)

    # ---- handlers -----------------------------------------------------------------

    def _fault(self, request: web.Request) -> web.Response | None:
        if not self._fail:
            return None
        status, headers = self._fail.pop(0)
        self.hits.append((request.method, request.path, status))
        resp = _errors(status, "temporarily unavailable")
        resp.headers.update(headers)
        return resp

    async def _post(self, request: web.Request) -> web.StreamResponse:
        if (fault := self._fault(request)) is not None:
            return fault
        form = {k: str(v) for k, v in (await request.post()).items()}
        key = request.headers.get("Idempotency-Key")
        if self.api_key and form.get("api_key") != self.api_key:
            return self._hit(request, _errors(403, "Invalid api_key received"))
        code = form.get("service_code")
        if not code:
            return self._hit(request, _errors(400, "service_code was not provided"))
        if code not in self.service_codes:
            return self._hit(request, _errors(404, f"service_code {code} was not found"))
        if not ({"lat", "long"} <= form.keys() or form.get("address_string")):
            return self._hit(request, _errors(400, "a location (lat/long or address) is required"))
        if key is not None and key in self.by_key:
            self.replays += 1
            req = self.by_key[key]
        else:
            req = FiledRequest(str(next(self._ids)), form, key)
            if self.tokens:
                req.token = f"tok-{req.service_request_id}"
                self.by_token[req.token] = req
                self.token_polls[req.token] = 0
            self.requests[req.service_request_id] = req
            if key is not None:
                self.by_key[key] = req
        if self._drop:
            self._drop -= 1
            self.hits.append(("POST", request.path, 0))
            assert request.transport is not None
            request.transport.abort()  # filed, but the answer is lost
            return web.Response()
        if req.token is not None:
            return self._hit(request, web.json_response([{"token": req.token}]))
        return self._hit(
            request,
            web.json_response(
                [
                    {
                        "service_request_id": req.service_request_id,
                        "service_notice": "",
                        "account_id": None,
                    }
                ]
            ),
        )

    async def _get_requests(self, request: web.Request) -> web.StreamResponse:
        if (fault := self._fault(request)) is not None:
            return fault
        ids = [i for i in request.query.get("service_request_id", "").split(",") if i]
        found = [self.requests[i].as_json() for i in ids if i in self.requests]
        if not ids:
            found = [r.as_json() for r in self.requests.values()]
        return self._hit(request, web.json_response(found))

    async def _get_token(self, request: web.Request) -> web.StreamResponse:
        if (fault := self._fault(request)) is not None:
            return fault
        token = request.match_info["token"]
        req = self.by_token.get(token)
        if req is None:
            return self._hit(request, _errors(404, f"token {token} not found"))
        self.token_polls[token] += 1
        rid = req.service_request_id if self.token_polls[token] > self.token_pending_polls else None
        return self._hit(request, web.json_response([{"service_request_id": rid, "token": token}]))

    def _hit(self, request: web.Request, resp: web.Response) -> web.Response:
        self.hits.append((request.method, request.path, resp.status))
        return resp
