"""The workbench's own state in one SQLite file: users, claims and suppressions.

Case state is not here: the workbench reads it from the case store and changes
it only through the status topic. What is here belongs to the workbench alone:
who may sign in (argon2id password hashes), who is looking at which case
(claims, which expire), and the suppressions reviewers made, with the revision
last published per camera.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.records import Suppression

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    grids TEXT NOT NULL,
    display_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    case_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS suppressions (
    suppression_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    place_id TEXT NOT NULL,
    body TEXT NOT NULL,
    expires_at REAL NOT NULL,
    lifted_at TEXT,
    lifted_by TEXT,
    lifted_why TEXT
);
CREATE INDEX IF NOT EXISTS suppressions_camera ON suppressions (camera_id);
CREATE TABLE IF NOT EXISTS camera_revisions (
    camera_id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    published INTEGER NOT NULL
);
"""

USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


class Role(StrEnum):
    PATROL = "patrol"  # reviews the cases of their grids
    SUPERVISOR = "supervisor"  # also bulk dismissal, lifting suppressions
    ADMIN = "admin"  # also every grid

    def at_least(self, other: Role) -> bool:
        order = (Role.PATROL, Role.SUPERVISOR, Role.ADMIN)
        return order.index(self) >= order.index(other)


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    grids: tuple[str, ...]  # empty: every grid
    display_name: str

    def sees(self, case_grids: Sequence[str | None]) -> bool:
        """Whether a case in ``case_grids`` (its large..micro grid names) is this user's."""
        if not self.grids:
            return True
        return any(g in self.grids for g in case_grids if g)


@dataclass(frozen=True)
class Claim:
    case_id: str
    username: str
    until: float


@dataclass(frozen=True)
class StoredSuppression:
    suppression: Suppression
    lifted_at: str | None
    lifted_by: str | None
    lifted_why: str | None


class UserError(ValueError):
    """A user that cannot be added as asked."""


class WorkbenchDb:
    """Thread-safe access to the workbench's SQLite file (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._hasher = PasswordHasher()  # argon2id, the library's current parameters

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- users -----------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str,
        role: Role,
        grids: Sequence[str] = (),
        display_name: str = "",
        *,
        replace: bool = False,
    ) -> User:
        if not username or not set(username) <= USERNAME_CHARS or len(username) > 64:
            raise UserError(f"user name {username!r}: use 1-64 of a-z 0-9 _ . -")
        if len(password) < 8:
            raise UserError("a password needs at least 8 characters")
        if role is Role.PATROL and not grids:
            raise UserError("a patrol user needs the grids of their workstation (--grid)")
        user = User(username, role, tuple(grids), display_name or username)
        row = (
            username,
            self._hasher.hash(password),
            role.value,
            json.dumps(list(grids), ensure_ascii=False),
            user.display_name,
        )
        with self._tx() as c:
            exists = c.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
            if exists and not replace:
                raise UserError(f"user {username!r} exists (--replace to change it)")
            c.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?)", row)
        return user

    def user(self, username: str) -> User | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT username, role, grids, display_name FROM users WHERE username = ?",
                (username,),
            ).fetchone()
        if row is None:
            return None
        return User(row[0], Role(row[1]), tuple(json.loads(row[2])), row[3])

    def check_password(self, username: str, password: str) -> User | None:
        """The user if ``password`` is theirs; ``None`` otherwise (also for no such user,
        after the same work, so timing does not tell which)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT password_hash FROM users WHERE username = ?", (username,)
            ).fetchone()
        stored = row[0] if row else _DUMMY_HASH
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            with self._tx() as c:
                c.execute(
                    "UPDATE users SET password_hash = ? WHERE username = ?",
                    (self._hasher.hash(password), username),
                )
        return self.user(username)

    # -- claims ----------------------------------------------------------------

    def claim(self, case_id: str, username: str, now: float, ttl_s: float) -> Claim:
        """Claim ``case_id`` for ``username`` unless someone else holds it; the holder."""
        with self._tx() as c:
            row = c.execute(
                "SELECT username, until FROM claims WHERE case_id = ?", (case_id,)
            ).fetchone()
            if row is not None and row[0] != username and row[1] > now:
                return Claim(case_id, row[0], row[1])
            c.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (case_id, username, now + ttl_s)
            )
            return Claim(case_id, username, now + ttl_s)

    def release(self, case_id: str, username: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM claims WHERE case_id = ? AND username = ?", (case_id, username))

    def claims(self, now: float) -> dict[str, Claim]:
        """Every claim in force, by case id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT case_id, username, until FROM claims WHERE until > ?", (now,)
            ).fetchall()
        return {r[0]: Claim(r[0], r[1], r[2]) for r in rows}

    # -- suppressions ----------------------------------------------------------

    def add_suppression(self, s: Suppression) -> bool:
        """Keep ``s``; ``False`` if one with its id is kept already (a repeat)."""
        with self._tx() as c:
            done = c.execute(
                "INSERT OR IGNORE INTO suppressions "
                "(suppression_id, camera_id, place_id, body, expires_at) VALUES (?, ?, ?, ?, ?)",
                (
                    s.suppression_id,
                    s.camera_id,
                    s.place_id,
                    s.model_dump_json(),
                    s.expires_at.timestamp(),
                ),
            )
            return done.rowcount == 1

    def lift(self, suppression_id: str, by: str, why: str, at: datetime) -> str | None:
        """Lift a suppression; its camera id, or ``None`` if none was in force."""
        with self._tx() as c:
            row = c.execute(
                "SELECT camera_id FROM suppressions WHERE suppression_id = ? AND lifted_at IS NULL",
                (suppression_id,),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE suppressions SET lifted_at = ?, lifted_by = ?, lifted_why = ? "
                "WHERE suppression_id = ?",
                (at.isoformat(), by, why, suppression_id),
            )
            return str(row[0])

    def suppressions(self) -> list[StoredSuppression]:
        """All suppressions, lifted and expired ones too, newest first."""
        sql = "SELECT body, lifted_at, lifted_by, lifted_why FROM suppressions ORDER BY rowid DESC"
        with self._lock:
            rows = self._conn.execute(sql).fetchall()
        return [
            StoredSuppression(Suppression.model_validate_json(r[0]), r[1], r[2], r[3]) for r in rows
        ]

    def live_for_camera(self, camera_id: str, at: datetime) -> list[Suppression]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM suppressions WHERE camera_id = ? AND lifted_at IS NULL "
                "AND expires_at > ? ORDER BY rowid",
                (camera_id, at.timestamp()),
            ).fetchall()
        return [Suppression.model_validate_json(r[0]) for r in rows]

    def changed(self, camera_id: str) -> int:
        """Note that ``camera_id``'s suppressions changed; the revision to publish."""
        with self._tx() as c:
            row = c.execute(
                "SELECT revision FROM camera_revisions WHERE camera_id = ?", (camera_id,)
            ).fetchone()
            revision = int(row[0]) + 1 if row else 1
            c.execute(
                "INSERT OR REPLACE INTO camera_revisions VALUES (?, ?, 0)", (camera_id, revision)
            )
            return revision

    def unpublished(self) -> dict[str, int]:
        """Cameras whose latest revision the suppression topic does not have yet."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT camera_id, revision FROM camera_revisions WHERE published = 0"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def published(self, camera_id: str, revision: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE camera_revisions SET published = 1 WHERE camera_id = ? AND revision = ?",
                (camera_id, revision),
            )

    def live_ids(self, at: datetime) -> dict[str, str]:
        """suppression id -> camera id of those in force at ``at``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT suppression_id, camera_id FROM suppressions WHERE lifted_at IS NULL "
                "AND expires_at > ?",
                (at.timestamp(),),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def live_at_places(self, place_ids: Sequence[str], at: datetime) -> list[Suppression]:
        if not place_ids:
            return []
        marks = ", ".join("?" for _ in place_ids)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT body FROM suppressions WHERE place_id IN ({marks}) "
                "AND lifted_at IS NULL AND expires_at > ?",
                (*place_ids, at.timestamp()),
            ).fetchall()
        return [Suppression.model_validate_json(r[0]) for r in rows]


_DUMMY_HASH = PasswordHasher().hash("not a password of anyone")
