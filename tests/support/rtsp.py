"""The test side of the RTSP server: ``tests/support/rtsp_server.py`` as a child process.

That script needs GStreamer's Python bindings, so it runs under Debian's
``/usr/bin/python3`` (the venv cannot import ``gi``) and is never imported;
this module starts, signals and stops it, and checks it can run here. The
``rtsp_prerequisites`` and ``rtsp_server`` fixtures in ``tests/conftest.py``
use it; a test wanting several servers builds ``RtspServer`` objects itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from streetwatch.processes import Child, free_port, wait_for_port

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).parent / "rtsp_server.py"
PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav"
)


class RtspServer:
    """tests/support/rtsp_server.py in its own process group, on a fixed port."""

    def __init__(self, workdir: Path, video: Path) -> None:
        self.workdir = workdir
        self.video = video
        self.port = free_port()
        self.child: Child | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    @property
    def log(self) -> Path:
        return self.workdir / f"rtsp-server-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.child = Child(
            "rtsp-server",
            [
                str(SYSTEM_PYTHON),
                str(SERVER_SCRIPT),
                "--port",
                str(self.port),
                "--video",
                str(self.video),
            ],
            log=self.log,
        )
        try:
            wait_for_port(self.port, 20, self.child.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.child.stop()
            pytest.fail(f"RTSP server did not start ({exc}); its log:\n{self.log.read_text()}")

    def signal(self, signum: signal.Signals) -> None:
        assert self.child is not None
        os.killpg(self.child.pid, signum)

    def kill(self) -> None:
        """SIGKILL: the server vanishes, its connections are reset."""
        assert self.child is not None
        self.signal(signal.SIGKILL)
        self.child.proc.wait(10)
        self.child.stop()

    def stop(self) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.child.stop(5)


def require_prerequisites() -> None:
    """Fail (not skip) with the package list when the server cannot run here."""
    if not SYSTEM_PYTHON.is_file():
        pytest.fail(f"{SYSTEM_PYTHON} is missing; the RTSP test server needs Debian's python3")
    check = subprocess.run(
        [str(SYSTEM_PYTHON), str(SERVER_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check.returncode != 0:
        pytest.fail(
            f"the RTSP test server cannot run (exit {check.returncode}): "
            f"{check.stderr.strip()}\ninstall: apt-get install {PACKAGES}"
        )
