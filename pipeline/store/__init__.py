"""The case store: SQLite (one file, or memory) or PostgreSQL, one interface.

``open_store("sqlite:///var/cases.db")`` (a path relative to the working
directory; ``sqlite:////abs/path`` for an absolute one), ``open_store(
"sqlite://:memory:")`` or ``open_store("postgresql://user@host:5432/db")``.
"""

from __future__ import annotations

import sqlite3
import sys

from pipeline.store.base import CaseStore, Change, CommitPlan, Head, StoreError, plan_commit

__all__ = [
    "CaseStore",
    "Change",
    "CommitPlan",
    "Head",
    "StoreError",
    "open_store",
    "plan_commit",
    "unavailable",
]


def open_store(url: str) -> CaseStore:
    """The case store at ``url``; its tables are created if missing."""
    if url.startswith("sqlite:"):
        from pipeline.store.sqlite import SqliteCaseStore

        return SqliteCaseStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from pipeline.store.postgres import PostgresCaseStore

        return PostgresCaseStore(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StoreError(
        f"store url {scheme!r}...: expected sqlite:///path, sqlite://:memory: "
        "or postgresql://user@host:port/db"
    )


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store (or the network to it) failed, so the same work
    may succeed later, rather than something wrong with the work itself."""
    if isinstance(exc, StoreError | OSError | TimeoutError | sqlite3.OperationalError):
        return True
    psycopg = sys.modules.get("psycopg")  # loaded with the PostgreSQL store, if in use
    return psycopg is not None and isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError
    )
