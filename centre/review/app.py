"""The review workbench: video-patrol staff judge flagged cases in seconds.

Server-rendered pages (FastAPI + Jinja2, htmx for partial updates, server-sent
events for live ones). The workbench *reads* case state from the case store
(the case page) and from the dispatch topic (the queue, :mod:`centre.review.live`);
it *writes* case state only as :class:`~core.records.StatusUpdate` records on
the status topic, which the dispatch worker applies, so the dispatch worker
stays the one writer of cases. A verdict is acknowledged to the reviewer once
the broker has it (``acks="all"``); the page then shows it applied when the
dispatch worker's event comes back.

Its own state (users, claims, suppressions) is in :mod:`centre.review.db`.
Security: argon2id passwords, a signed session cookie, a CSRF token on every
write (asgi-csrf, double submit), wrong passwords throttled per user name and
per address, and evidence served only to signed-in users who may see the case,
by the case id and sha256 (never by a path).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from asgi_csrf import asgi_csrf  # type: ignore[import-untyped]
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from centre.config import CentreServiceConfig
from centre.evidence_store import EvidenceStore, FilesystemEvidenceStore
from centre.review.cards import Card, Filters, cameras_of, level_at
from centre.review.db import Role, User, WorkbenchDb
from centre.review.i18n import REASON, Words
from centre.review.live import DispatchFeed, Hub
from centre.review.suppressions import SuppressionDesk
from core.kafka import reliable_producer
from core.records import (
    Case,
    CaseStatus,
    EvidenceKind,
    StatusUpdate,
    Suppression,
    SuppressionKind,
    stable_id,
)
from pipeline.lifecycle import allowed
from pipeline.store import CaseStore, open_store

log = logging.getLogger("streetwatch.review")

HERE = Path(__file__).parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
SHA256 = re.compile(r"[0-9a-f]{64}")
CASE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
SESSION_COOKIE = "sw_session"
LANG_COOKIE = "sw_lang"

#: the verdict buttons: action -> the status it asks for (None: a note)
ACTIONS: dict[str, CaseStatus | None] = {
    "confirm": CaseStatus.DISPATCHED,
    "reject": CaseStatus.REJECTED,
    "merge": CaseStatus.MERGED,
    "self_handle": CaseStatus.SELF_HANDLED,
    "note": None,
}


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in page, everything else is 401."""


class Unavailable(Exception):
    """The dispatch stream cannot take a write now; nothing was sent."""


@dataclass
class Workbench:
    """Everything a request handler needs."""

    cfg: CentreServiceConfig
    db: WorkbenchDb
    store: CaseStore
    evidence: EvidenceStore
    hub: Hub
    feed: DispatchFeed
    desk: SuppressionDesk
    limiter: MovingWindowRateLimiter
    login_limit: RateLimitItemPerMinute
    address_limit: RateLimitItemPerMinute
    producer: AIOKafkaProducer | None = None
    refused: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    def refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    async def send_updates(self, updates: list[StatusUpdate]) -> None:
        """Put ``updates`` on the status topic; return once the broker has all of them."""
        producer = self.producer
        if producer is None:
            raise Unavailable("the dispatch stream is not connected yet")
        try:
            for u in updates:
                await producer.send_and_wait(
                    self.cfg.kafka.status_topic,
                    value=u.to_json_bytes(),
                    key=u.case_id.encode("utf-8"),
                )
        except KafkaError as exc:
            raise Unavailable(
                f"the dispatch stream did not acknowledge the update ({exc}); send it again: "
                "a repeat is applied once"
            ) from exc
        self.sent += len(updates)
        for u in updates:
            log.info(
                "event=status_sent case=%s status=%s by=%s reason=%s update=%s",
                u.case_id,
                u.status,
                u.by,
                u.reason,
                u.update_id,
            )


def session_secret(cfg: CentreServiceConfig) -> bytes:
    """The key that signs session cookies: ``session_secret_file``, or one made once."""
    r = cfg.review
    path = Path(r.session_secret_file) if r.session_secret_file else Path(r.db).with_suffix(".key")
    if not path.exists() and not r.session_secret_file:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32), encoding="utf-8")
        path.chmod(0o600)
    secret = path.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 32:
        raise ValueError(f"{path}: a session secret needs at least 32 characters")
    return secret


def words_for(request: Request) -> Words:
    wb: Workbench = request.app.state.wb
    return Words(request.cookies.get(LANG_COOKIE) or wb.cfg.review.language)


def current_user(request: Request) -> User:
    wb: Workbench = request.app.state.wb
    username = request.session.get("user")
    since = request.session.get("since")
    if not isinstance(username, str) or not isinstance(since, (int, float)):
        raise NotSignedIn()
    if time.time() - since > wb.cfg.review.session_hours * 3600:
        request.session.clear()
        raise NotSignedIn()
    user = wb.db.user(username)
    if user is None:  # removed since signing in
        request.session.clear()
        raise NotSignedIn()
    return user


def supervisor(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.role.at_least(Role.SUPERVISOR):
        raise HTTPException(403, "supervisors only")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
Supervisor = Annotated[User, Depends(supervisor)]


def visible_grids(user: User) -> tuple[str, ...] | None:
    return None if not user.grids or user.role is Role.ADMIN else user.grids


def case_grids(case: Case) -> tuple[str | None, ...]:
    g = case.place.grids
    return (g.large, g.medium, g.small, g.micro)


def may_see(user: User, case: Case) -> bool:
    return user.role is Role.ADMIN or user.sees(case_grids(case))


class WriteBodies:
    """Writes carry form bodies or nothing: other content types are refused (415) before
    the CSRF check reads them, so a hostile multipart body never reaches a parser."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope.get("headers") or [])
            kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if kind not in (b"", b"application/x-www-form-urlencoded"):
                response = Response("form bodies only", status_code=415)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ServerTiming:
    """``Server-Timing: app;dur=<ms>`` on every response: the time from the request to
    the response's first byte inside the app (what the queue benchmark reads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={ms:.2f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)


def create_app(
    cfg: CentreServiceConfig,
    *,
    store: CaseStore | None = None,
    evidence: EvidenceStore | None = None,
) -> FastAPI:
    """The workbench app; it connects to Kafka and the store when it starts."""
    db = WorkbenchDb(cfg.review.db)
    case_store = store or open_store(cfg.store.url)
    hub = Hub()
    wb_box: dict[str, Workbench] = {}
    desk = SuppressionDesk(
        db,
        cfg.kafka,
        lambda: wb_box["wb"].producer if "wb" in wb_box else None,
        cfg.review.escalate_urgency,
    )
    hub.listeners.append(desk.on_case)
    wb = Workbench(
        cfg=cfg,
        db=db,
        store=case_store,
        evidence=evidence or FilesystemEvidenceStore(Path(cfg.evidence.store_dir)),
        hub=hub,
        feed=DispatchFeed(cfg.kafka, case_store, hub),
        desk=desk,
        limiter=MovingWindowRateLimiter(MemoryStorage()),
        login_limit=RateLimitItemPerMinute(cfg.review.login_attempts_per_minute),
        address_limit=RateLimitItemPerMinute(5 * cfg.review.login_attempts_per_minute),
    )
    wb_box["wb"] = wb

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(wb.feed.run(stop), name="review-feed"),
            asyncio.create_task(_connect(wb, stop), name="review-producer"),
            asyncio.create_task(desk.run(stop), name="review-suppressions"),
        ]
        try:
            yield
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if wb.producer is not None:
                await wb.producer.stop()
            case_store.close()
            db.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.wb = wb
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["REASONS"] = list(REASON)
    templates.env.filters["local"] = _local_time
    templates.env.filters["ago"] = _ago
    templates.env.filters["epoch"] = lambda t: _local_time(datetime.fromtimestamp(t, UTC))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _routes(app, wb, templates)

    secret = session_secret(cfg)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret.decode(),
        session_cookie=SESSION_COOKIE,
        max_age=int(cfg.review.session_hours * 3600),
        same_site="lax",
        https_only=cfg.review.secure_cookies,
    )
    csrf_key = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()

    async def csrf_failed(scope: Scope, send: Send, message_id: object) -> None:
        wb.refuse("csrf")
        log.warning(
            "event=write_refused reason=csrf path=%s detail=%s", scope.get("path"), message_id
        )
        response = Response(
            "CSRF token missing or wrong: reload the page and try again", status_code=403
        )
        await response(scope, _no_body, send)

    app.add_middleware(
        asgi_csrf,
        signing_secret=csrf_key,
        always_protect={"/login"},
        cookie_secure=cfg.review.secure_cookies,
        always_set_cookie=True,
        send_csrf_failed=csrf_failed,
    )
    app.add_middleware(WriteBodies)
    app.add_middleware(ServerTiming)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        wb.refuse("no_session")
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if wants_page and "/evidence/" not in request.url.path:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return JSONResponse({"error": "sign in first"}, status_code=401)

    @app.exception_handler(StarletteHTTPException)  # the app's refusals and the router's 404s
    async def _refused(request: Request, exc: StarletteHTTPException) -> Response:
        wb.refuse(f"http_{exc.status_code}")
        log.warning(
            "event=request_refused status=%d method=%s path=%s detail=%s",
            exc.status_code,
            request.method,
            request.url.path,
            exc.detail,
        )
        if "text/html" in request.headers.get("accept", ""):
            words = words_for(request)
            return templates.TemplateResponse(
                request,
                "error.html",
                {"w": words, "lang": words.language, "csrftoken": "", "detail": exc.detail},
                status_code=exc.status_code,
            )
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> Response:
        wb.refuse("kafka_unavailable")
        log.warning("event=write_refused reason=kafka_unavailable detail=%s", exc)
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    return app


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _connect(wb: Workbench, stop: asyncio.Event) -> None:
    """Start the producer (status updates, suppressions), retrying until the broker answers."""
    delay = 0.5
    while not stop.is_set():
        producer = reliable_producer(wb.cfg.kafka)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            log.warning("event=review_producer_down error=%s retry_s=%.1f", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        wb.producer = producer
        wb.desk.wake.set()
        return


def _local_time(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.astimezone(SHANGHAI).strftime("%m-%d %H:%M:%S")


def _ago(dt: datetime) -> str:
    s = int((datetime.now(UTC) - dt).total_seconds())
    if s < 60:
        return f"{max(s, 0)}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//host`` or a scheme."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _filters(request: Request) -> Filters:
    q = request.query_params
    urgency = q.get("urgency", "")
    return Filters(
        grid=q.get("grid", ""),
        category=q.get("category", ""),
        # the queue is for judging: filed cases unless asked for more ("all": every open one)
        status="" if q.get("status") == "all" else q.get("status") or CaseStatus.FILED.value,
        urgency=int(urgency) if urgency.isdigit() and 1 <= int(urgency) <= 4 else None,
        source_kind=q.get("source_kind", ""),
        camera=q.get("camera", ""),
    )


def _routes(app: FastAPI, wb: Workbench, templates: Jinja2Templates) -> None:
    cfg = wb.cfg.review

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        words = words_for(request)
        token_fn: Callable[[], str] | None = request.scope.get("csrftoken")
        return templates.TemplateResponse(
            request,
            name,
            {
                "w": words,
                "lang": words.language,
                "csrftoken": token_fn() if token_fn else "",
                **context,
            },
            status_code=status,
        )

    async def get_case(user: User, case_id: str) -> Case:
        if not CASE_ID.fullmatch(case_id):
            raise HTTPException(404, "no such case")
        case = await asyncio.to_thread(wb.store.get, case_id)
        if case is None or not may_see(user, case):
            wb.refuse("case_not_visible")
            raise HTTPException(404, "no such case")
        return case

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {
            "ok": True,
            "feed": wb.feed.connected,
            "producer": wb.producer is not None,
            "open_cases": len(wb.hub.queue.cards),
        }

    # -- signing in --------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", next=_safe_next(next), error="")

    @app.post("/login", response_model=None)
    async def login(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        address = request.client.host if request.client else "-"
        name = username.strip().lower()[:64]
        limit = wb.login_limit
        if not (
            wb.limiter.test(limit, "user", name)
            and wb.limiter.test(wb.address_limit, "address", address)
        ):
            wb.refuse("login_throttled")
            log.warning("event=login_throttled user=%s address=%s", name, address)
            return page(
                request,
                "login.html",
                status=429,
                next=_safe_next(next),
                error=words_for(request).ui("throttled"),
            )
        user = await asyncio.to_thread(wb.db.check_password, name, password)
        if user is None:
            wb.limiter.hit(limit, "user", name)
            wb.limiter.hit(wb.address_limit, "address", address)
            wb.refuse("bad_password")
            log.warning("event=login_failed user=%s address=%s", name, address)
            return page(
                request,
                "login.html",
                status=401,
                next=_safe_next(next),
                error=words_for(request).ui("bad_login"),
            )
        request.session.clear()
        request.session.update({"user": user.username, "since": time.time()})
        log.info("event=login user=%s role=%s address=%s", user.username, user.role, address)
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/lang/{code}")
    async def language(request: Request, code: str, back: str = "/") -> RedirectResponse:
        response = RedirectResponse(_safe_next(back), status_code=303)
        if code in ("zh-CN", "en"):
            response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax")
        return response

    # -- the queue -----------------------------------------------------------------

    def queue_context(request: Request, user: User) -> dict[str, Any]:
        now = datetime.now(UTC)
        filters = _filters(request)
        cards, total = wb.hub.queue.page(visible_grids(user), filters, now, cfg.page_size)
        claims = wb.db.claims(time.time())
        return {
            "user": user,
            "cards": cards,
            "total": total,
            "now": now,
            "claims": claims,
            "filters": filters,
            "facets": wb.hub.queue.facets(visible_grids(user)),
            "query": urlencode({k: v for k, v in request.query_params.items() if v}),
            "ready": wb.feed.ready.is_set(),
        }

    @app.get("/", response_class=HTMLResponse)
    async def queue(request: Request, user: CurrentUser) -> HTMLResponse:
        return page(request, "queue.html", **queue_context(request, user))

    @app.get("/queue/list", response_class=HTMLResponse)
    async def queue_list(request: Request, user: CurrentUser) -> HTMLResponse:
        return page(request, "queue_list.html", **queue_context(request, user))

    @app.get("/queue/cards/{case_id}", response_class=HTMLResponse)
    async def queue_card(request: Request, case_id: str, user: CurrentUser) -> HTMLResponse:
        card = wb.hub.queue.cards.get(case_id)
        if card is None or (
            visible_grids(user) is not None and not set(user.grids) & set(card.grids)
        ):
            raise HTTPException(404, "not in the queue")
        return page(
            request,
            "card.html",
            card=card,
            now=datetime.now(UTC),
            claims=wb.db.claims(time.time()),
            user=user,
        )

    @app.get("/events")
    async def events(request: Request, user: CurrentUser) -> EventSourceResponse:
        sub = wb.hub.subscribe(user.grids if visible_grids(user) is not None else ())

        async def stream() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "hello", "data": "{}"}
                while not sub.dropped:
                    try:
                        change = await asyncio.wait_for(sub.changes.get(), 15.0)
                    except TimeoutError:
                        continue
                    yield {"event": "case", "data": json.dumps(change.payload())}
                yield {"event": "reload", "data": "{}"}
            finally:
                wb.hub.unsubscribe(sub)

        return EventSourceResponse(stream(), ping=15)

    @app.get("/next", response_model=None)
    async def next_case(request: Request, user: CurrentUser, after: str = "") -> Response:
        now = datetime.now(UTC)
        filed = Filters(status=CaseStatus.FILED.value)
        cards, _ = wb.hub.queue.page(visible_grids(user), filed, now, 200)
        claims = wb.db.claims(time.time())
        for card in cards:
            held = claims.get(card.case_id)
            if card.case_id != after and (held is None or held.username == user.username):
                return RedirectResponse(f"/cases/{quote(card.case_id)}", status_code=303)
        return RedirectResponse("/", status_code=303)

    # -- a case ------------------------------------------------------------------

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case_page(request: Request, case_id: str, user: CurrentUser) -> HTMLResponse:
        case = await get_case(user, case_id)
        history = await asyncio.to_thread(wb.store.events_for, case_id)
        claim = None
        if not case.status.terminal:
            claim = wb.db.claim(case_id, user.username, time.time(), cfg.claim_s)
        now = datetime.now(UTC)

        def latest(kind: EvidenceKind) -> Any:
            found = [e for e in case.evidence if e.kind is kind]
            return found[-1] if found else None

        cameras = cameras_of(case)
        pending = request.session.pop("pending", None)
        return page(
            request,
            "case.html",
            user=user,
            case=case,
            card=Card.of(case),
            history=history,
            claim=claim,
            mine=claim is not None and claim.username == user.username,
            now=now,
            snapshot=latest(EvidenceKind.SNAPSHOT),
            clip=latest(EvidenceKind.CLIP),
            chart=latest(EvidenceKind.READINGS),
            cameras=cameras,
            labels=sorted({d.label for d in case.detections}),
            pending=pending,
            level_of=lambda clock: (
                "green"
                if clock.met_at is not None
                else level_at(clock.yellow_at, clock.due_at, now)
            ),
        )

    @app.post("/cases/{case_id}/claim")
    async def renew_claim(case_id: str, user: CurrentUser) -> dict[str, object]:
        claim = wb.db.claim(case_id, user.username, time.time(), cfg.claim_s)
        return {
            "holder": claim.username,
            "until": claim.until,
            "mine": claim.username == user.username,
        }

    @app.get("/cases/{case_id}/evidence/{sha256}")
    async def evidence_file(case_id: str, sha256: str, user: CurrentUser) -> FileResponse:
        if not SHA256.fullmatch(sha256):
            wb.refuse("bad_evidence_name")
            raise HTTPException(404, "no such evidence")
        case = await get_case(user, case_id)
        if not any(e.sha256 == sha256 for e in case.evidence):
            wb.refuse("evidence_not_of_case")
            raise HTTPException(404, "no such evidence")
        found = wb.evidence.find(sha256)
        if found is None:
            raise HTTPException(404, "the evidence service does not have this file (yet)")
        path, media_type = found
        return FileResponse(
            path,
            media_type=media_type,
            headers={
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                "Cache-Control": "private, max-age=300",
            },
        )

    @app.post("/cases/{case_id}/verdict")
    async def verdict(
        request: Request,
        case_id: str,
        user: CurrentUser,
        action: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        merged_into: Annotated[str, Form()] = "",
        suppress: Annotated[str, Form()] = "",
        polygon: Annotated[str, Form()] = "",
        labels: Annotated[list[str] | None, Form()] = None,
        hours: Annotated[str, Form()] = "",
        days: Annotated[str, Form()] = "",
        camera: Annotated[str, Form()] = "",
    ) -> Response:
        if action not in ACTIONS:
            raise HTTPException(422, f"unknown action {action!r}")
        case = await get_case(user, case_id)
        status = ACTIONS[action]
        claims = wb.db.claims(time.time())
        held = claims.get(case_id)
        if held is not None and held.username != user.username:
            wb.refuse("claimed_by_other")
            raise HTTPException(409, f"{held.username} is reviewing this case")
        note = note.strip()[:2000]
        # the same verdict again, already applied (its first answer was lost, e.g. a 503
        # while the broker took it anyway): nothing is sent twice, a suppression is kept
        repeat = status is not None and case.status is status and case.status_by == user.username
        if status is None:
            if not note:
                raise HTTPException(422, "a note needs text")
        elif not repeat and (case.status.terminal or not allowed(case.status, status)):
            raise HTTPException(409, f"case is {case.status}: cannot become {status}")
        if status is CaseStatus.REJECTED and reason not in REASON:
            raise HTTPException(422, f"a rejection needs one of the reasons {', '.join(REASON)}")
        if status is CaseStatus.MERGED:
            into = await get_case(user, merged_into.strip())
            if into.case_id == case_id or (into.status.terminal and not repeat):
                raise HTTPException(422, "merge into another open case")
        suppression = None
        if status is CaseStatus.REJECTED and suppress:
            suppression = _suppression(
                case,
                user,
                reason,
                suppress,
                polygon,
                labels or [],
                hours,
                days,
                camera,
                cfg.suppression_days,
            )
        update = StatusUpdate(
            update_id=stable_id("review", case_id, str(case.version), user.username, action),
            case_id=case_id,
            status=status,
            at=datetime.now(UTC),
            by=user.username,
            note=note,
            merged_into=merged_into.strip() if status is CaseStatus.MERGED else None,
            reason=reason if status is CaseStatus.REJECTED else None,
        )
        if not repeat:
            await wb.send_updates([update])
        if suppression is not None:
            await wb.desk.add(suppression)  # unpublished ones are retried by the desk
        wb.db.release(case_id, user.username)
        request.session["pending"] = {
            "case_id": case_id,
            "status": status.value if status else case.status.value,
            "version": case.version,
        }
        if request.headers.get("hx-request"):
            return Response(
                status_code=204, headers={"HX-Redirect": f"/next?after={quote(case_id)}"}
            )
        then = f"/next?after={quote(case_id)}" if status is not None else f"/cases/{quote(case_id)}"
        return RedirectResponse(then, status_code=303)

    @app.post("/bulk-dismiss", response_model=None)
    async def bulk_dismiss(
        request: Request,
        user: Supervisor,
        reason: Annotated[str, Form()] = "",
        case_ids: Annotated[list[str] | None, Form()] = None,
        note: Annotated[str, Form()] = "",
    ) -> Response:
        if reason not in REASON:
            raise HTTPException(422, f"a dismissal needs one of the reasons {', '.join(REASON)}")
        if not case_ids:
            raise HTTPException(422, "no case chosen")
        updates = []
        now = datetime.now(UTC)
        for case_id in case_ids[:500]:
            case = await get_case(user, case_id)
            if case.status.terminal:
                continue
            updates.append(
                StatusUpdate(
                    update_id=stable_id("review-bulk", case_id, str(case.version), user.username),
                    case_id=case_id,
                    status=CaseStatus.REJECTED,
                    at=now,
                    by=user.username,
                    note=note.strip()[:2000] or "bulk dismissal",
                    reason=reason,
                )
            )
        await wb.send_updates(updates)
        return RedirectResponse("/", status_code=303)

    # -- suppressions ------------------------------------------------------------

    @app.get("/suppressions", response_class=HTMLResponse)
    async def suppressions(request: Request, user: CurrentUser) -> HTMLResponse:
        rows = await asyncio.to_thread(wb.db.suppressions)
        return page(request, "suppressions.html", user=user, rows=rows, now=datetime.now(UTC))

    @app.post("/suppressions/{suppression_id}/lift")
    async def lift(suppression_id: str, user: Supervisor) -> RedirectResponse:
        if not await wb.desk.lift(suppression_id, user.username, "lifted by hand"):
            raise HTTPException(404, "no such suppression in force")
        return RedirectResponse("/suppressions", status_code=303)


def _suppression(
    case: Case,
    user: User,
    reason: str,
    kind: str,
    polygon: str,
    labels: list[str],
    hours: str,
    days: str,
    camera: str,
    default_days: float,
) -> Suppression:
    """The suppression a rejection asks for; HTTP 422 naming what is wrong."""
    cameras = cameras_of(case)
    if not cameras:
        raise HTTPException(422, "only a camera's case can suppress (no camera reported it)")
    camera = camera or cameras[0]
    if camera not in cameras:
        raise HTTPException(422, f"camera {camera!r} did not report this case")
    try:
        life = float(days) if days else default_days
    except ValueError:
        raise HTTPException(422, f"days {days!r} is not a number") from None
    if not 0 < life <= 90:
        raise HTTPException(422, "a suppression lasts more than 0 and at most 90 days")
    points: list[tuple[float, float]] = []
    if kind == SuppressionKind.MASK:
        try:
            raw = json.loads(polygon or "[]")
            points = [(float(x), float(y)) for x, y in raw]
        except (ValueError, TypeError):
            raise HTTPException(422, "the mask is not a list of [x, y] points") from None
    try:
        skind = SuppressionKind(kind)
    except ValueError:
        raise HTTPException(422, f"unknown suppression {kind!r}") from None
    now = datetime.now(UTC)
    try:
        return Suppression(
            suppression_id=stable_id("supp", case.case_id, user.username),
            kind=skind,
            camera_id=camera,
            place_id=case.place.place_id,
            # a mask or hours hide every class there (a van seen as a truck one frame and
            # a bus the next is still the van); only muting names classes
            labels=tuple(sorted({x.strip() for x in labels if x.strip()}))
            if skind is SuppressionKind.MUTE_CLASS
            else (),
            polygon=tuple(points),
            hours=tuple(h.strip() for h in hours.split(",") if h.strip()),
            case_id=case.case_id,
            reason=reason,
            created_by=user.username,
            created_at=now,
            expires_at=now + timedelta(days=life),
        )
    except ValueError as exc:
        raise HTTPException(422, f"suppression: {exc}") from None
