"""The edge outbox: what the box must deliver, on disk until the broker has it.

An alert counts as *raised* once :meth:`Outbox.put` has returned: it is then
committed to a SQLite file in WAL mode with ``synchronous = FULL``, so it
survives a crash of any process and a power cut. Camera threads and the
sensor rules write here and go on; they never wait for the uplink.

A :class:`Forwarder` per *lane* (alerts, dead letters, evidence uploads) reads its lane in
order, hands a batch to its sender, and deletes the batch only after the
sender returned, i.e. after the broker acknowledged every entry in it. A
crash or an outage between the two sends the batch again: delivery is at
least once and in order per lane; alert ids are deterministic, so the
dispatch service folds a re-sent alert as the re-delivery it is. A batch
that fails is retried with backoff until it goes through: nothing is ever
skipped or evicted.

Several processes may share one outbox file (the edge worker and its
sensor rules process): SQLite serialises their writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.records import Alert, DeadLetter

log = logging.getLogger(__name__)

Lane = Literal["alerts", "dead_letters", "evidence"]
LANES: tuple[Lane, ...] = ("alerts", "dead_letters", "evidence")
BUSY_TIMEOUT_S = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    lane TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    put_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane_seq ON outbox (lane, seq)
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing to deliver: its place in the outbox, its key and its bytes."""

    seq: int
    key: bytes | None
    value: bytes


Item = tuple[bytes | None, bytes]  # (key, value)


class Outbox:
    """A durable queue of lanes in one SQLite file (``path``; ``:memory:`` for tests)."""

    def __init__(self, path: Path | str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if self.path != ":memory:":
            self._wal(time.monotonic() + busy_timeout_s)
        # raised means on disk: a commit survives a power cut, not only a crash
        self._db.execute("PRAGMA synchronous = FULL")
        with self._write() as db:
            for statement in SCHEMA.split(";"):
                db.execute(statement)

    def _wal(self, deadline: float) -> None:
        while True:  # switching to WAL does not wait for the busy timeout
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put(self, batches: dict[Lane, Sequence[Item]]) -> int:
        """Commit every item of every lane in one transaction; the number put.

        Returns only once the items are on disk."""
        rows = [
            (lane, key, value, time.time())
            for lane, items in batches.items()
            for key, value in items
        ]
        if not rows:
            return 0
        waited = 0.0
        while True:
            try:
                with self._write() as db:
                    db.executemany(
                        "INSERT INTO outbox (lane, key, value, put_at) VALUES (?, ?, ?, ?)", rows
                    )
                return len(rows)
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc):
                    raise
                # the disk is full: wait for room (the disk guard deletes evidence the
                # centre has and raises a health alert); never drop what was raised
                if waited % 60 == 0:
                    log.error("event=outbox_disk_full rows=%d waited_s=%.0f", len(rows), waited)
                time.sleep(1.0)
                waited += 1.0

    def put_records(
        self, alerts: Sequence[Alert], dead: Sequence[DeadLetter] = (), *, upload: bool = False
    ) -> int:
        """Alerts and dead letters, committed together (what one batch caused); with
        ``upload``, each alert's evidence files too, in the evidence lane, in the same
        transaction."""
        evidence = [(None, e.to_json_bytes()) for a in alerts for e in a.evidence] if upload else []
        return self.put(
            {
                "alerts": [(None, a.to_json_bytes()) for a in alerts],
                "dead_letters": [(None, d.to_json_bytes()) for d in dead],
                "evidence": evidence,
            }
        )

    def peek(self, lane: Lane, limit: int) -> list[Entry]:
        """The oldest ``limit`` entries of ``lane``, in the order they were put."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, value FROM outbox WHERE lane = ? ORDER BY seq LIMIT ?",
                (lane, limit),
            ).fetchall()
        return [Entry(seq, key, value) for seq, key, value in rows]

    def remove(self, entries: Sequence[Entry]) -> None:
        """Delete delivered entries."""
        with self._write() as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(e.seq,) for e in entries])

    def count(self, lane: Lane | None = None) -> int:
        with self._lock:
            if lane is None:
                (n,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
            else:
                (n,) = self._db.execute(
                    "SELECT count(*) FROM outbox WHERE lane = ?", (lane,)
                ).fetchone()
        return int(n)

    def backlog(self) -> dict[Lane, tuple[int, float]]:
        """Per lane holding entries: how many, and when the oldest was put (Unix time)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT lane, count(*), min(put_at) FROM outbox GROUP BY lane"
            ).fetchall()
        return {lane: (int(n), float(oldest)) for lane, n, oldest in rows if lane in LANES}

    def writable(self) -> str | None:
        """None if a write could start now; what is wrong otherwise (taken at once, or
        not at all: this waits for no other writer)."""
        try:
            with self._lock:
                self._db.execute("PRAGMA busy_timeout = 0")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute("ROLLBACK")
                finally:
                    self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None  # another process writes: so can we, in a moment
            return f"{type(exc).__name__}: {exc}"
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()


Sender = Callable[[Sequence[Entry]], Awaitable[None]]


class Forwarder:
    """Delivers one lane of an :class:`Outbox` through ``send``, in order, at least once.

    ``send`` returns once every entry it was given is acknowledged and raises
    otherwise; the forwarder then waits (doubling from ``retry_min_s`` to
    ``retry_max_s``) and sends the same entries again. :meth:`wake` (from any
    thread, via :meth:`wake_threadsafe`) says new entries were put; without a
    wake-up the lane is looked at every ``poll_s`` (another process puts too).
    """

    def __init__(
        self,
        outbox: Outbox,
        lane: Lane,
        send: Sender,
        *,
        batch: int = 500,
        poll_s: float = 0.2,
        retry_min_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        self.outbox, self.lane, self.send = outbox, lane, send
        self.batch, self.poll_s = batch, poll_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.delivered = 0
        self.failures = 0
        # Unix times of the last acknowledged batch and the last failed one (for metrics)
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_error = ""
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        self._wake.set()

    def wake_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set and the lane is empty, or until cancelled."""
        self._loop = asyncio.get_running_loop()
        retry_s = self.retry_min_s
        while True:
            entries = await asyncio.to_thread(self.outbox.peek, self.lane, self.batch)
            if not entries:
                if stop.is_set():
                    return
                self._wake.clear()
                stopping = asyncio.create_task(stop.wait())
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    (stopping, woken), timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
                )
                stopping.cancel()
                woken.cancel()
                continue
            try:
                await self.send(entries)
            except Exception as exc:
                self.failures += 1
                self.last_failure = time.time()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "event=outbox_send_failed lane=%s entries=%d backlog=%d error=%s; "
                    "retrying in %.1fs",
                    self.lane,
                    len(entries),
                    await asyncio.to_thread(self.outbox.count, self.lane),
                    f"{type(exc).__name__}: {exc}",
                    retry_s,
                )
                await asyncio.sleep(retry_s)
                retry_s = min(self.retry_max_s, 2 * retry_s)
                continue
            retry_s = self.retry_min_s
            self.last_success = time.time()
            await asyncio.to_thread(self.outbox.remove, entries)
            self.delivered += len(entries)
