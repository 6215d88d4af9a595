"""Waiting for something to become true: one sync and one async poll, both bounded.

``wait_until`` is for threads and child processes seen from plain test code,
``until`` for asyncio tests (it sleeps with ``asyncio.sleep``, so the event
loop keeps running the code under test). Both check first, then every
``interval`` seconds, and fail with an :class:`AssertionError` naming what
they waited for and for how long, so a timed-out test says why.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def _timed_out(what: str, timeout: float) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_until(
    check: Callable[[], bool], what: str, timeout: float, interval: float = 0.05
) -> None:
    """Return as soon as ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout)
        time.sleep(interval)


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float,
    interval: float = 0.05,
) -> None:
    """``wait_until`` for asyncio tests; ``check`` may be a plain or an async callable."""
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout)
        await asyncio.sleep(interval)
