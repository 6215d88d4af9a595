"""core/memory.py on this machine's glibc: the arena cap is taken, trimming is harmless."""

from __future__ import annotations

import subprocess
import sys

from core.memory import give_back, limit_arenas


def test_the_arena_cap_is_applied_and_nonsense_is_refused() -> None:
    # in a child: the cap stays for the life of the process that sets it
    code = "from core.memory import limit_arenas; print(limit_arenas(2), limit_arenas(0))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_giving_memory_back_keeps_what_is_in_use() -> None:
    kept = [bytes([i]) * 1_000_000 for i in range(8)]
    del kept[::2]
    give_back()
    assert [k[0] for k in kept] == [1, 3, 5, 7] and all(len(k) == 1_000_000 for k in kept)
    assert limit_arenas(-1) is False
