"""The case store, SQLite and a real PostgreSQL: same behaviour, same contents.

Every test that reaches PostgreSQL (the ``postgres`` case of a backend parameter,
or a test of PostgreSQL alone) is marked ``integration``; the SQLite cases run
with the unit tests.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from core.records import (
    Case,
    CaseEventType,
    CaseStatus,
    SlaLevel,
    SlaStage,
)
from pipeline.store import CaseStore, Change, StoreError, open_store
from tests.support.cases import after, at, bump, clocks, event, first, make_case
from tests.support.postgres_server import PostgresServer

SHANGHAI = ZoneInfo("Asia/Shanghai")


# -- backends -----------------------------------------------------------------


# the backends a test runs on; PostgreSQL is a real server, hence an integration test
BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.integration)]


def fresh_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "") -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'cases{name}.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaseStore]:
    s = open_store(fresh_url(str(request.param), tmp_path, request))
    yield s
    s.close()


@pytest.fixture
def both(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[list[CaseStore]]:
    """Two empty stores, one per backend, in one list (a test using it is an integration
    test: it names ``postgres_server`` so that conftest's check sees it)."""
    stores = [open_store(fresh_url(k, tmp_path, request)) for k in ("sqlite", "postgres")]
    yield stores
    for s in stores:
        s.close()


# -- a case history to feed both ----------------------------------------------


def history() -> list[Change]:
    """A realistic run: opens, updates, status moves, a close, a new case, SLA warnings."""
    out: list[Change] = []
    a = make_case("s1", filed=at(0))
    out.append(first(a))
    a2 = bump(a, alert_count=2, last_seen=at(3), confidence=0.83)
    out.append(after(a, a2, "a2"))
    b = make_case("s2", "garbage_overflow", opening="b1", filed=at(1), owner="环卫所")
    out.append(first(b, "b1"))
    clocks_y = tuple(
        c.model_copy(update={"level": SlaLevel.YELLOW}) if c.stage is SlaStage.DISPATCH else c
        for c in a2.sla
    )
    a3 = bump(a2, sla=clocks_y, last_seen=at(8))
    out.append(Change(event(a3, "sla:dispatch:yellow", CaseEventType.SLA_YELLOW), (a2.case_id, 2)))
    met = tuple(
        c.model_copy(update={"met_at": at(9)}) if c.stage is SlaStage.DISPATCH else c
        for c in a3.sla
    )
    a4 = bump(a3, status=CaseStatus.DISPATCHED, status_at=at(9), sla=met, last_note="派单")
    out.append(Change(event(a4, "u1", CaseEventType.STATUS_CHANGED, at(9)), (a3.case_id, 3)))
    done = tuple(c.model_copy(update={"met_at": c.met_at or at(40)}) for c in a4.sla)
    a5 = bump(
        a4, status=CaseStatus.CLOSED, status_at=at(40), closed_at=at(40), sla=done, last_note="结案"
    )
    out.append(Change(event(a5, "u2", CaseEventType.STATUS_CHANGED, at(40)), (a4.case_id, 4)))
    # the problem comes back later: a new case, linked, recurrence 2
    c = make_case("s1", opening="c1", filed=at(300), recurrence=2).model_copy(
        update={"linked_case_ids": (a.case_id,)}
    )
    out.append(Change(event(c, "c1", CaseEventType.OPENED), (a5.case_id, a5.version)))
    # a late status update of the old case (verified after closing): not the head
    a6 = bump(a5, last_note="核查通过", status_at=at(301))
    out.append(Change(event(a6, "u3", CaseEventType.STATUS_CHANGED, at(301)), (a5.case_id, 5)))
    # an event whose times are in +08:00: stored and compared as instants
    b2 = bump(b, last_seen=at(302).astimezone(SHANGHAI), alert_count=3)
    out.append(Change(event(b2, "b2", emitted=at(302).astimezone(SHANGHAI)), (b.case_id, 1)))
    return out


# -- commit -------------------------------------------------------------------


def test_commit_writes_case_head_and_unpublished_event(store: CaseStore) -> None:
    a = make_case()
    assert store.head(a.case_key) is None
    written = store.commit([first(a)])
    assert [e.case_id for e in written] == [a.case_id]
    assert store.head(a.case_key) == a
    assert store.get(a.case_id) == a
    assert store.has_cause(a.case_id, "a1")
    assert not store.has_cause(a.case_id, "a2")
    assert not store.has_cause("case-other", "a1")
    assert store.events_for(a.case_id) == written
    assert store.unpublished(at(60), 10) == written
    store.mark_published([written[0].event_id, "case-x:v9"])
    assert store.unpublished(at(60), 10) == []
    assert store.dump()["events"][written[0].event_id]["published"] is True


def held(old: Case, new: Case, cause: str, emitted: datetime) -> Change:
    return Change(event(new, cause, emitted=emitted), (old.case_id, old.version), held=True)


def test_held_changes_wait_outside_the_outbox_until_released(store: CaseStore) -> None:
    a = make_case()
    store.commit([first(a)])
    store.mark_published([f"{a.case_id}:v1"])
    a2, a3 = bump(a, alert_count=2), bump(a, alert_count=3, version=3)
    written = store.commit([held(a, a2, "a2", at(1)), held(a2, a3, "a3", at(2))])
    assert [e.version for e in written] == [2, 3]  # both held, both reported
    assert store.get(a.case_id) == a3 and store.head(a.case_key) == a3
    assert store.unpublished(at(60), 10) == []
    assert [e.version for e in store.events_for(a.case_id)] == [1]
    assert store.held(at(0.5), 10) == []  # held since the first of them, at(1)
    assert store.held(at(1), 10) == [a3]

    stale = event(a2, "coalesced", emitted=at(12))  # a version the case has left
    assert store.release([stale]) == []
    release = event(a3, "coalesced", emitted=at(12))
    assert store.release([release]) == [release]
    assert store.release([release]) == []  # once
    assert store.held(at(60), 10) == []
    assert store.unpublished(at(60), 10) == [release]
    assert store.dump()["events"][release.event_id]["cause_id"] == "coalesced"


def test_a_published_change_ends_the_hold(store: CaseStore) -> None:
    a = make_case()
    a2, a3 = bump(a, alert_count=2), bump(a, alert_count=2, version=3, last_note="派单")
    store.commit([first(a), held(a, a2, "a2", at(1))])
    assert store.held(at(60), 10) == [a2]
    assert [e.version for e in store.commit([after(a2, a3, "u1")])] == [3]
    assert store.held(at(60), 10) == []
    assert store.release([event(a3, "coalesced", emitted=at(12))]) == []


def test_commit_skips_changes_whose_head_moved(store: CaseStore) -> None:
    a = make_case()
    store.commit([first(a)])
    a2 = bump(a, alert_count=2)
    stale = bump(a, alert_count=5)  # computed from v1 too, by another worker
    assert len(store.commit([after(a, a2, "a2")])) == 1
    assert store.commit([after(a, stale, "a9")]) == []
    # a first case at a key that already has one: skipped too
    other = make_case(opening="zz")
    assert store.commit([first(other, "zz")]) == []
    assert store.head(a.case_key) == a2
    assert store.get(other.case_id) is None
    assert not store.has_cause(a.case_id, "a9")
    assert [e.version for e in store.events_for(a.case_id)] == [1, 2]


def test_a_batch_builds_on_itself_and_skips_only_what_no_longer_holds(store: CaseStore) -> None:
    a, b = make_case("s1"), make_case("s2", opening="b1")
    store.commit([first(a), first(b, "b1")])
    a2, a3 = bump(a, alert_count=2), bump(bump(a, alert_count=2), alert_count=3)
    b_stale = bump(bump(b))  # built on b v2, which nobody wrote
    b_stale_next = bump(b_stale)
    c = make_case("s3", opening="c1")
    c2 = bump(c)
    written = store.commit(
        [
            after(a, a2, "a2"),
            after(b_stale.model_copy(update={"version": 2}), b_stale, "b3"),
            after(a2, a3, "a3"),
            first(c, "c1"),
            after(b_stale, b_stale_next, "b4"),
            after(c, c2, "c2"),
        ]
    )
    assert [(e.case_id, e.version) for e in written] == [
        (a.case_id, 2),
        (a.case_id, 3),
        (c.case_id, 1),
        (c.case_id, 2),
    ]
    assert store.head(a.case_key) == a3
    assert store.head(b.case_key) == b
    assert store.head(c.case_key) == c2
    assert store.get(c.case_id) == c2


def test_new_case_replaces_head_and_older_cases_still_move(store: CaseStore) -> None:
    changes = history()
    written = store.commit(changes)
    assert len(written) == len(changes)
    a = changes[0][0].case
    c = changes[6][0].case
    assert store.head(a.case_key) == c  # the newest case at the key
    old = store.get(a.case_id)
    assert old is not None and old.version == 6 and old.last_note == "核查通过"
    dumped = store.dump()
    assert dumped["heads"][a.case_key] == [c.case_id, 1]
    # replaying the whole history changes nothing
    assert store.commit(changes) == []
    assert store.dump() == dumped


def test_inconsistent_change_is_an_error(store: CaseStore) -> None:
    a = make_case()
    broken = event(a, "a1").model_copy(update={"version": 2})
    with pytest.raises(ValueError, match="carries case"):
        store.commit([Change(broken, None)])
    with pytest.raises(ValueError, match="does not follow"):
        store.commit([Change(event(bump(a), "x"), (a.case_id, 2))])


# -- the same stream into both backends ---------------------------------------


@pytest.mark.integration
def test_both_backends_hold_the_same_contents(both: list[CaseStore]) -> None:
    changes = history()
    for s in both:
        # in several batches, with a stale duplicate in between
        s.commit(changes[:3])
        s.commit([changes[1]])
        s.commit(changes[3:])
        s.mark_published([changes[0][0].event_id, changes[4][0].event_id])
    sqlite, postgres = (s.dump() for s in both)
    assert sqlite == postgres
    assert len(sqlite["events"]) == len(changes)
    assert sum(e["published"] for e in sqlite["events"].values()) == 2
    for s in both:
        assert [c.case_id for c in s.all_cases()] == [c.case_id for c in both[0].all_cases()]


@pytest.mark.integration
def test_apply_twice_or_shuffled_gives_the_committed_contents(
    both: list[CaseStore], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    changes = history()
    committed = both[0]
    committed.commit(changes)
    committed.mark_published([c.event.event_id for c in changes])
    want = committed.dump()
    events = [c.event for c in changes]
    for kind in ("sqlite", "postgres"):
        for seed in range(3):
            shuffled = events[:]
            random.Random(seed).shuffle(shuffled)
            with open_store(fresh_url(kind, tmp_path, request, f"-{seed}")) as projection:
                changed = [projection.apply(e) for e in shuffled]
                assert all(changed)
                assert projection.apply_many(reversed(events)) == 0
                assert projection.dump() == want, (kind, seed)


def test_apply_marks_committed_events_published(store: CaseStore) -> None:
    changes = history()
    store.commit(changes)
    assert store.apply(changes[2][0]) is True
    assert store.apply(changes[2][0]) is False
    assert changes[2][0] not in store.unpublished(at(10_000), 100)


# -- queries ------------------------------------------------------------------


def test_due_sla_compares_instants_in_any_timezone(store: CaseStore) -> None:
    a = make_case("s1", filed=at(0))  # yellow at 8 min
    b = make_case("s2", opening="b1", filed=at(5))  # yellow at 13 min
    closed = make_case("s3", opening="c1", filed=at(0), status=CaseStatus.CLOSED)
    met = tuple(c.model_copy(update={"met_at": at(1)}) for c in clocks(at(0)))
    quiet = make_case("s4", opening="d1", filed=at(0), sla=met)  # nothing pending
    store.commit([first(a), first(b, "b1"), first(closed, "c1"), first(quiet, "d1")])
    assert store.due_sla(at(7.99), 10) == []
    # exactly at yellow_at, given as Shanghai time: due
    assert store.due_sla(at(8).astimezone(SHANGHAI), 10) == [a]
    assert store.due_sla(at(20), 10) == [a, b]
    assert store.due_sla(at(20), 1) == [a]
    # after a yellow the next warning is red at due_at
    yellow = tuple(
        c.model_copy(update={"level": SlaLevel.YELLOW}) if c.stage is SlaStage.DISPATCH else c
        for c in a.sla
    )
    a2 = bump(a, sla=yellow)
    store.commit([after(a, a2, "sla:dispatch:yellow")])
    assert store.due_sla(at(9), 10) == []
    assert store.due_sla(at(10), 10) == [a2]


def test_unpublished_oldest_first_before_a_time(store: CaseStore) -> None:
    cases = [make_case(f"s{i}", opening=f"o{i}", filed=at(10 - i)) for i in range(5)]
    written = store.commit([first(c, f"o{i}") for i, c in enumerate(cases)])
    assert [e.case_id for e in store.unpublished(at(8).astimezone(SHANGHAI), 10)] == [
        cases[4].case_id,
        cases[3].case_id,
    ]
    assert len(store.unpublished(at(100), 3)) == 3
    store.mark_published([e.event_id for e in written[::2]])
    assert [e.event_id for e in store.unpublished(at(100), 10)] == [
        written[3].event_id,
        written[1].event_id,
    ]


def test_cases_filed_between_is_half_open(store: CaseStore) -> None:
    cases = [make_case(f"s{i}", opening=f"o{i}", filed=at(i * 60)) for i in range(4)]
    store.commit([first(c, f"o{i}") for i, c in enumerate(cases)])
    got = store.cases_filed_between(at(60).astimezone(SHANGHAI), at(180))
    assert got == cases[1:3]
    assert store.all_cases() == cases


# -- opening ------------------------------------------------------------------


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///var/cases.db") as s:
        s.commit([first(make_case())])
    assert (tmp_path / "var" / "cases.db").is_file()
    with open_store(f"sqlite:///{tmp_path}/var/cases.db") as s:  # absolute: four slashes
        assert len(s.all_cases()) == 1
    with open_store("sqlite://:memory:") as s:
        assert s.all_cases() == []
    with pytest.raises(StoreError, match="expected sqlite"):
        open_store("sqlite:/x.db")
    with pytest.raises(StoreError, match="expected sqlite"):
        open_store("mysql://db/cases")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open case store"):
        open_store(f"sqlite:///{tmp_path}/file/cases.db")
    (tmp_path / "junk.db").write_text("not a database" * 100)
    with pytest.raises(StoreError, match="cannot open case store"):
        open_store(f"sqlite:///{tmp_path}/junk.db")


@pytest.mark.integration
def test_postgres_connection_error_is_clear(postgres_server: PostgresServer) -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(postgres_server.url_for("no_such_db"))


@pytest.mark.integration
def test_postgres_head_created_meanwhile_is_decided_again(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_url("postgres", tmp_path, request)
    a = make_case()
    with open_store(url) as store, psycopg.connect(url) as other:
        # another writer creates the head of a's key and has not committed yet
        other.execute(
            "INSERT INTO heads (case_key, case_id, version) VALUES (%s, 'case-other', 1)",
            (a.case_key,),
        )
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(store.commit, [first(a)])
            time.sleep(0.3)
            assert not pending.done()  # waiting on the other transaction's head
            other.commit()
            assert pending.result(timeout=10) == []  # decided again: the key has a head
        assert store.get(a.case_id) is None
        assert store.dump()["heads"] == {a.case_key: ["case-other", 1]}


# -- two processes, one store ---------------------------------------------------


@dataclass
class Contended:
    name: str
    bases: list[str]  # base cases whose v2 this process wrote
    steps: list[int]  # lockstep versions it won
    conflicts: int  # free-running commits skipped because the head had moved


def contend(
    url: str,
    name: str,
    bases: list[Case],
    keys: tuple[str, str],
    rounds: int,
    gate: Barrier,
    out: Queue[Contended],
) -> None:
    """One worker process, racing another on the same store."""
    store = open_store(url)
    step_key, hot_key = keys
    result = Contended(name, [], [], 0)
    # 1. every base case from v1, the two going from opposite ends
    gate.wait()
    mine = bases if name == "w1" else bases[::-1]
    for i in range(0, len(mine), 5):
        batch = [after(b, bump(b, last_note=name), name) for b in mine[i : i + 5]]
        result.bases += [e.case_id for e in store.commit(batch)]
    # 2. lockstep: both read the same head, then both commit on it
    for _ in range(rounds):
        gate.wait()
        head = store.head(step_key)
        assert head is not None
        gate.wait()
        change = after(head, bump(head, last_note=name), f"{name}:{head.version}")
        result.steps += [e.version for e in store.commit([change])]
    # 3. free-running: read the head and commit the next version until `rounds` succeed
    gate.wait()
    done = 0
    while done < rounds:
        head = store.head(hot_key)
        assert head is not None
        if store.commit([after(head, bump(head, last_note=name), f"{name}:{head.version}")]):
            done += 1
        else:
            result.conflicts += 1
    store.close()
    out.put(result)


@pytest.mark.parametrize("kind", BACKENDS)
def test_two_processes_one_winner_per_expected_head(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_url(kind, tmp_path, request)
    bases = [make_case(f"s{i}", opening=f"o{i}") for i in range(200)]
    step, hot = make_case("step", opening="h1"), make_case("hot", opening="h2")
    with open_store(url) as s:
        s.commit([first(c, f"o{i}") for i, c in enumerate([*bases, step, hot])])
    ctx = multiprocessing.get_context("spawn")
    gate = ctx.Barrier(2)
    out: Queue[Contended] = ctx.Queue()
    rounds = 30
    keys = (step.case_key, hot.case_key)
    procs = [
        ctx.Process(target=contend, args=(url, name, bases, keys, rounds, gate, out))
        for name in ("w1", "w2")
    ]
    for p in procs:
        p.start()
    results = {r.name: r for r in (out.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    w1, w2 = results["w1"], results["w2"]
    print(
        f"\n{kind}: base cases won {len(w1.bases)}/{len(w2.bases)}, lockstep rounds won "
        f"{len(w1.steps)}/{len(w2.steps)}, free-running conflicts {w1.conflicts}/{w2.conflicts}"
    )
    assert sorted(w1.bases + w2.bases) == sorted(c.case_id for c in bases)
    # every lockstep round: exactly one of the two commits on the same head won
    assert sorted(w1.steps + w2.steps) == list(range(2, 2 + rounds))
    with open_store(url) as s:
        for c in bases:
            now = s.get(c.case_id)
            assert now is not None and now.version == 2
            assert c.case_id in results[now.last_note].bases
            assert [e.version for e in s.events_for(c.case_id)] == [1, 2]
        stepped = s.head(step.case_key)
        assert stepped is not None and stepped.version == 1 + rounds
        # no lost update when free-running: every success is one version
        final = s.head(hot.case_key)
        assert final is not None and final.version == 1 + 2 * rounds
        assert [e.version for e in s.events_for(hot.case_id)] == list(range(1, 2 + 2 * rounds))


# -- throughput ----------------------------------------------------------------


def timed_commits(store: CaseStore, n: int, prefix: str) -> tuple[float, float]:
    cases = [make_case(f"{prefix}{i}", opening=f"o{i}") for i in range(n)]
    t = time.perf_counter()
    assert len(store.commit([first(c, f"o{i}") for i, c in enumerate(cases)])) == n
    opened = time.perf_counter() - t
    t = time.perf_counter()
    batch = [after(c, bump(c, alert_count=2), f"u{i}") for i, c in enumerate(cases)]
    assert len(store.commit(batch)) == n
    return opened, time.perf_counter() - t


def test_a_batch_of_500_is_one_quick_transaction(store: CaseStore) -> None:
    timed_commits(store, 50, "warm")
    opened, updated = timed_commits(store, 500, "k")
    print(
        f"\n{type(store).__name__}: 500 new cases {500 / opened:.0f} changes/s, "
        f"500 updates {500 / updated:.0f} changes/s"
    )
    assert opened < 5 and updated < 5


def _open_in_lockstep(folder: str, rounds: int, barrier: Barrier, out: Queue[str]) -> None:
    for r in range(rounds):
        barrier.wait()
        try:
            open_store(f"sqlite:///{folder}/round-{r}.db").close()
            out.put("ok")
        except StoreError as exc:
            out.put(str(exc))


def test_workers_starting_together_all_open_a_new_sqlite_file(tmp_path: Path) -> None:
    """Switching a new file to WAL takes it exclusively; the others wait, never fail."""
    ctx = multiprocessing.get_context("spawn")
    rounds, procs = 30, 4
    barrier = ctx.Barrier(procs)
    out: Queue[str] = ctx.Queue()
    workers = [
        ctx.Process(target=_open_in_lockstep, args=(str(tmp_path), rounds, barrier, out))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=120) for _ in range(rounds * procs)]
    for w in workers:
        w.join(30)
    assert [r for r in results if r != "ok"] == []
