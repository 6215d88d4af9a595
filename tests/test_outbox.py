"""The edge outbox on a real SQLite file: order, durability across processes, and a
forwarder that retries a failing uplink without ever skipping an entry."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import Sequence
from pathlib import Path

from edge.outbox import Entry, Forwarder, Outbox
from tests.support.factories import alert
from tests.support.polling import until


def values(entries: Sequence[Entry]) -> list[bytes]:
    return [e.value for e in entries]


def test_lanes_keep_their_order_and_an_entry_goes_only_when_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.put({"alerts": [(None, b"a1"), (b"k", b"a2")], "dead_letters": [(None, b"d1")]})
    box.put({"alerts": [(None, b"a3")]})
    first = box.peek("alerts", 2)
    assert values(first) == [b"a1", b"a2"] and first[1].key == b"k"
    assert values(box.peek("dead_letters", 10)) == [b"d1"]
    box.remove(first)
    assert values(box.peek("alerts", 10)) == [b"a3"]
    assert (box.count("alerts"), box.count()) == (1, 2)


def test_what_was_put_is_there_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    raised = alert(10)
    Outbox(path).put_records([raised])  # the process that put it is gone
    (entry,) = Outbox(path).peek("alerts", 10)
    assert entry.value == raised.to_json_bytes()


def _put_in_child(path: str, n: int) -> None:
    box = Outbox(path)
    for i in range(n):
        box.put({"alerts": [(None, f"child-{i}".encode())]})


def test_two_processes_put_into_one_outbox(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")
    box = Outbox(path)
    child = mp.get_context("spawn").Process(target=_put_in_child, args=(path, 50))
    child.start()
    for i in range(50):
        box.put({"alerts": [(None, f"parent-{i}".encode())]})
    child.join(60)
    assert child.exitcode == 0
    got = values(box.peek("alerts", 1000))
    assert sorted(got) == sorted(
        [f"child-{i}".encode() for i in range(50)] + [f"parent-{i}".encode() for i in range(50)]
    )
    assert [v for v in got if v.startswith(b"child")] == [f"child-{i}".encode() for i in range(50)]


async def test_a_failing_uplink_is_retried_in_order_and_nothing_is_skipped(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.put({"alerts": [(None, f"a{i:02d}".encode()) for i in range(25)]})
    sent: list[bytes] = []
    attempts = 0

    async def send(entries: Sequence[Entry]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts in (2, 3):  # the broker is unreachable for a while
            raise ConnectionError("uplink down")
        sent.extend(values(entries))

    fwd = Forwarder(box, "alerts", send, batch=10, retry_min_s=0.01, poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(fwd.run(stop))
    await until(lambda: box.count("alerts") == 0, "the lane emptied", timeout=10)
    box.put({"alerts": [(None, b"late")]})
    fwd.wake()
    await until(lambda: sent[-1:] == [b"late"], "a later entry", timeout=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sent == [f"a{i:02d}".encode() for i in range(25)] + [b"late"]
    assert (fwd.failures, fwd.delivered) == (2, 26)


async def test_on_stop_the_forwarder_empties_its_lane_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.put({"dead_letters": [(None, b"d")] * 3})
    sent: list[bytes] = []

    async def send(entries: Sequence[Entry]) -> None:
        sent.extend(values(entries))

    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(Forwarder(box, "dead_letters", send).run(stop), 10)
    assert sent == [b"d"] * 3 and box.count() == 0


def test_an_empty_put_writes_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    assert box.put({"alerts": [], "dead_letters": []}) == 0
    assert box.count() == 0
