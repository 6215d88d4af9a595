"""The workbench's doors, tried from outside against a live server.

A real `streetwatch review serve` process on a real SQLite case store and
Tansu: no session gets nothing (a redirect to sign in, or 401); a patrol
user gets no supervisor action (403) and no case of another grid; a write
without the CSRF token is refused; evidence is served by case and sha256
only, so `../` and absolute paths find nothing; the 11th wrong password in a
minute is throttled, even when it is right.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from centre.evidence_store import FilesystemEvidenceStore
from core.kafka import ensure_topics
from core.records import Case, Evidence, EvidenceKind, GridRef, Place
from pipeline.store import open_store
from streetwatch.brokers import RunningBroker
from tests.support import review
from tests.support.cases import first, make_case
from tests.support.kafka_helpers import fresh_kafka

pytestmark = pytest.mark.integration

SECRET = "the contents of a file outside the evidence store"


@dataclass
class Site:
    url: str
    ours: Case  # in patrol1's grid
    theirs: Case  # in another grid
    sha: str  # the snapshot of ``ours``
    other_sha: str  # the snapshot of ``theirs``


def with_snapshot(case: Case, grid: str, store: FilesystemEvidenceStore, body: bytes) -> Case:
    sha = hashlib.sha256(body).hexdigest()
    store.put(sha, body, "image/jpeg")
    snapshot = Evidence(
        kind=EvidenceKind.SNAPSHOT,
        sha256=sha,
        media_type="image/jpeg",
        captured_at=case.filed_at,
        size=len(body),
    )
    place = Place(place_id=case.site_id, name=f"{grid} 1号", grids=GridRef(large=grid))
    return case.model_copy(update={"place": place, "evidence": (snapshot,)})


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(
    tansu: RunningBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    tmp = tmp_path_factory.mktemp("review-security")
    (tmp / "secret.txt").write_text(SECRET)
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    evidence = FilesystemEvidenceStore(tmp / "evidence")
    ours = with_snapshot(make_case("s1"), "曹杨新村街道", evidence, b"\xff\xd8ours\xff\xd9")
    theirs = with_snapshot(make_case("s2"), "长风新村街道", evidence, b"\xff\xd8theirs\xff\xd9")
    store_url = f"sqlite:///{tmp / 'cases.db'}"
    with open_store(store_url) as store:
        store.commit([first(ours), first(theirs)])
    config = review.write_config(tmp, kafka, store_url, tmp / "evidence")
    review.add_users(config, {**review.USERS, "victim": ("patrol", ("曹杨新村街道",))})
    wb = review.start(config, tmp / "review.log")
    try:
        yield Site(wb.url, ours, theirs, ours.evidence[0].sha256, theirs.evidence[0].sha256)
    finally:
        wb.stop()


def pages(s: Site) -> list[str]:
    c = s.ours.case_id
    return [
        "/",
        "/queue/list",
        f"/queue/cards/{c}",
        "/events",
        "/next",
        f"/cases/{c}",
        f"/cases/{c}/evidence/{s.sha}",
        "/suppressions",
    ]


def writes(s: Site) -> list[str]:
    c = s.ours.case_id
    return [f"/cases/{c}/verdict", f"/cases/{c}/claim", "/bulk-dismiss", "/suppressions/x/lift"]


def test_the_lists_above_name_every_route() -> None:
    """So a new page cannot be added without its no-session check."""
    from centre.review.app import create_app
    from centre.review.config import ReviewConfig
    from streetwatch.config import Config

    cfg = Config(review=ReviewConfig(db=":memory:", session_secret_file=str(_key_file())))
    app = create_app(cfg, store=open_store("sqlite://:memory:"))
    routes = {
        (method, route.path)  # type: ignore[attr-defined]
        for route in app.routes
        for method in getattr(route, "methods", None) or ()
    }
    fake = Site("", make_case("a"), make_case("b"), "0" * 64, "1" * 64)
    c = fake.ours.case_id
    named = {("GET", p.replace(c, "{case_id}").replace("0" * 64, "{sha256}")) for p in pages(fake)}
    named |= {
        ("POST", p.replace(c, "{case_id}").replace("/x/", "/{suppression_id}/"))
        for p in writes(fake)
    }
    public = {("GET", "/healthz"), ("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}
    public |= {("GET", "/lang/{code}"), ("HEAD", "/healthz"), ("HEAD", "/login")}
    guarded = {r for r in routes if r not in public and not r[1].startswith("/static")}
    guarded = {r for r in guarded if r[0] != "HEAD"}
    assert guarded == named


def _key_file() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "session.key"
    path.write_text("k" * 64)
    return path


@pytest.mark.asyncio(loop_scope="module")
async def test_no_session_gets_a_redirect_or_401_everywhere(site: Site) -> None:
    async with review.Session(site.url) as anon:
        for path in pages(site):
            status, _ = await anon.get(path)
            assert status in (303, 401), (path, status)
            if path.startswith("/cases/") and "/evidence/" in path:
                assert status == 401, path  # a file is never a page to redirect
        for path in writes(site):
            # with a good CSRF token (a visitor has one): the session is what is missing
            status, _ = await anon.post(path, {"action": "note", "note": "x"})
            assert status == 401, (path, status)
        async with anon.http.get(f"{site.url}/cases/x?y=1", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login?next=/cases/x%3Fy%3D1"


@pytest.mark.asyncio(loop_scope="module")
async def test_a_patrol_user_sees_only_their_grids_and_no_supervisor_action(site: Site) -> None:
    async with review.Session(site.url) as patrol:
        assert await patrol.sign_in("patrol1") == 303
        status, queue = await patrol.get("/")
        assert status == 200
        assert site.ours.case_id in queue and site.theirs.case_id not in queue
        assert (await patrol.get(f"/cases/{site.theirs.case_id}"))[0] == 404
        assert (await patrol.get(f"/cases/{site.theirs.case_id}/evidence/{site.other_sha}"))[
            0
        ] == 404
        assert (await patrol.get(f"/queue/cards/{site.theirs.case_id}"))[0] == 404
        # a sha256 of another case's evidence through a case the user may see
        assert (await patrol.get(f"/cases/{site.ours.case_id}/evidence/{site.other_sha}"))[0] == 404
        bulk: dict[str, str | list[str]] = {
            "reason": "wrong_object",
            "case_ids": [site.ours.case_id],
        }
        assert (await patrol.post("/bulk-dismiss", bulk))[0] == 403
        assert (await patrol.post("/suppressions/x/lift", {}))[0] == 403
        merge = {"action": "merge", "merged_into": site.theirs.case_id}
        assert (await patrol.post(f"/cases/{site.ours.case_id}/verdict", merge))[0] == 404
    async with review.Session(site.url) as outsider:
        assert await outsider.sign_in("outsider") == 303
        status, queue = await outsider.get("/")
        assert site.ours.case_id not in queue and site.theirs.case_id in queue
        assert (await outsider.get(f"/cases/{site.ours.case_id}"))[0] == 404


@pytest.mark.asyncio(loop_scope="module")
async def test_a_write_without_the_csrf_token_is_refused(site: Site) -> None:
    async with review.Session(site.url) as patrol:
        assert await patrol.sign_in("patrol2") == 303
        note = {"action": "note", "note": "seen from the workstation"}
        status, body = await patrol.post(f"/cases/{site.ours.case_id}/verdict", note, token=False)
        assert status == 403, body
        status, _ = await patrol.post(f"/cases/{site.ours.case_id}/claim", {}, token=False)
        assert status == 403
        # the same write with the token goes through (to the status topic)
        status, body = await patrol.post(f"/cases/{site.ours.case_id}/verdict", note)
        assert status == 303, body
        # and a body the CSRF check cannot read is refused before anything parses it
        async with patrol.http.post(
            f"{site.url}/cases/{site.ours.case_id}/verdict",
            data=b"--x\r\n",
            headers={"Content-Type": "multipart/form-data", "x-csrftoken": "nope"},
        ) as r:
            assert r.status == 415


@pytest.mark.asyncio(loop_scope="module")
async def test_evidence_is_named_by_sha256_only_and_nothing_outside_the_store_is_read(
    site: Site,
) -> None:
    c = site.ours.case_id
    async with review.Session(site.url) as patrol:
        assert await patrol.sign_in("patrol1") == 303
        async with patrol.http.get(f"{site.url}/cases/{c}/evidence/{site.sha}") as r:
            assert r.status == 200 and await r.read() == b"\xff\xd8ours\xff\xd9"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        for attempt in (
            f"/cases/{c}/evidence/../../secret.txt",
            f"/cases/{c}/evidence/..%2F..%2Fsecret.txt",
            f"/cases/{c}/evidence/%2Fetc%2Fpasswd",
            f"/cases/{c}/evidence//etc/passwd",
            f"/cases/{c}/evidence/{site.sha[:-1]}g",
            f"/cases/{c}/evidence/{site.sha.upper()}",
            f"/cases/..%2F..%2Fsecret.txt/evidence/{site.sha}",
            "/static/..%2F..%2F..%2Fsecret.txt",
            "/static/../../secret.txt",
        ):
            status, body = await patrol.get(attempt)
            assert status == 404, (attempt, status)
            assert SECRET not in body and "root:" not in body


@pytest.mark.asyncio(loop_scope="module")
async def test_the_eleventh_wrong_password_in_a_minute_is_throttled(site: Site) -> None:
    async with review.Session(site.url) as guesser:
        for _ in range(10):
            assert await guesser.sign_in("victim", "wrong password") == 401
        assert await guesser.sign_in("victim", "wrong password") == 429
        assert await guesser.sign_in("victim") == 429  # even the right one, for now
    async with review.Session(site.url) as colleague:  # another user at the same address
        assert await colleague.sign_in("patrol2") == 303
