"""Keeping a long-running, many-threaded process's memory from creeping up (glibc only).

glibc's malloc gives each thread that allocates its own arena, up to 8 per
core; an edge box runs a thread per camera, a decoder per camera, the
evidence pool and onnxruntime's threads, and frees in one arena what another
allocated, so freed memory stays spread over many arenas and the resident
size creeps up. :func:`limit_arenas` caps them (as ``MALLOC_ARENA_MAX`` would,
but set from inside, so that every way of starting the box gets it), and
:func:`give_back` returns free pages at the top and in the middle of every
arena to the system (``malloc_trim``), after bursts of large, short-lived
buffers such as a clip's decoded frames. Measured with ``python -m
bench.box``. On another C library both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc: no mallopt / malloc_trim
        return None


def limit_arenas(arenas: int) -> bool:
    """Cap malloc's arenas for threads started from now on; whether it was applied."""
    libc = _libc()
    if libc is None or arenas < 1:
        return False
    applied = bool(libc.mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, applied)
    return applied


def give_back() -> None:
    """Return the free memory of every malloc arena to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
