"""`streetwatch demo` end to end, as a user runs it: cases printed, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_demo_prints_cases_and_stops_cleanly(tmp_path: Path, vtest_video: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetwatch.cli",
            "demo",
            "--fast",
            "--duration",
            "150",
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "Traceback" not in result.stderr
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
