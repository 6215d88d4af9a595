"""`streetwatch demo` end to end, as a user runs it: cases printed, the review workbench
open with the printed login until Ctrl-C, nothing left running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.review import Session

pytestmark = pytest.mark.integration


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Standard output until a line holding ``needle`` (a thread reads, so a hung demo
    fails the test instead of blocking it)."""
    lines: list[str] = []
    found = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), f"no {needle!r} within {timeout}s: {''.join(lines)}"
    return "".join(lines)


def test_demo_prints_cases_keeps_the_workbench_open_and_stops_cleanly(
    tmp_path: Path, vtest_video: Path
) -> None:
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "streetwatch.cli", "demo", "--fast", "--duration", "150"]
    proc = subprocess.Popen(
        [*argv, "--run-dir", str(run_dir), "--keep-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        out = read_until(proc, "Ctrl-C stops them", timeout=240)
        login = re.search(
            r"^review workbench: (http://127\.0\.0\.1:\d+)/ \(user demo, password (\S+)\)",
            out,
            re.M,
        )
        assert login, out
        queue = asyncio.run(signed_in_queue(login.group(1), login.group(2)))
        assert "违法停车" in queue and "积水超警" in queue  # the demo's two cases, filed
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err + out
    assert "Traceback" not in err
    kafka_port = re.search(r"kafka 127\.0\.0\.1:(\d+)", out)
    assert kafka_port, out
    assert re.search(r"^case opened .* illegal_parking +@ loading-bay-b", out, re.M), out
    # the van's repeat alerts update the one case (held and published together)
    counts = re.findall(
        r"^case updated .* illegal_parking +@ loading-bay-b .* count (\d+) ", out, re.M
    )
    assert counts and int(counts[-1]) >= 2, out
    assert re.search(r"^case opened .* water_level_high +@ underpass-north", out, re.M)
    assert "2 case(s)" in out and "1 illegal_parking, 1 water_level_high" in out
    assert "rejected sensor messages: {'not_json': 1}" in out
    assert "not yet on the dispatch topic" not in out
    leftovers = processes_mentioning(str(run_dir), f"127.0.0.1:{kafka_port.group(1)}")
    assert leftovers == []


async def signed_in_queue(url: str, password: str) -> str:
    async with Session(url) as demo:
        assert await demo.sign_in("demo", password) == 303
        status, body = await demo.get("/")
        assert status == 200
        return body
