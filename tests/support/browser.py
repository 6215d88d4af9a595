"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser download is not used (it does not work on our
machines; never run ``playwright install``): Playwright drives the Debian
``chromium`` package through ``executable_path``. Pages are served over HTTP
from 127.0.0.1 by a small threaded server on a free port (media elements do
not behave the same from ``file://``); it answers HTTP Range requests as a
real web server does, so the browser can fetch media piecewise.

A missing browser or Playwright is a test **failure** with the command that
fixes it, never a skip.
"""

from __future__ import annotations

import http.server
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser
    from playwright.sync_api import BrowserContext

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def require_chromium() -> Path:
    """The Chromium binary, or fail the test saying how to install it."""
    path = CHROMIUM if CHROMIUM.is_file() else None
    if path is None:
        found = shutil.which("chromium")
        path = Path(found) if found else None
    if path is None:
        pytest.fail(
            f"Chromium is missing ({CHROMIUM} not found): install Debian's package as root "
            "with `apt-get install -y chromium` (Playwright's own browser download is not used)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"Playwright is missing ({exc}): run `.venv/bin/pip install -e '.[dev]'`")
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support, no logging."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        match = _RANGE.match(self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first_s, last_s = match.groups()
        if first_s:
            first, last = int(first_s), int(last_s) if last_s else size - 1
        elif last_s:  # suffix range: the last n bytes
            first, last = max(0, size - int(last_s)), size - 1
        else:
            first, last = 0, size - 1
        last = min(last, size - 1)
        if first > last:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        fh = path.open("rb")
        fh.seek(first)
        self._remaining = last - first + 1
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(self._remaining))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return fh

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)

    def end_headers(self) -> None:
        if not hasattr(self, "_remaining"):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (free port); yield its base URL."""

    class Handler(_Handler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def chromium() -> Iterator[BrowserContext]:
    """A headless Chromium context with a fresh, throw-away profile."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        sync_playwright() as pw,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(executable),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            context.close()


@asynccontextmanager
async def async_chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for asyncio tests; each ``new_context()`` is a fresh profile
    (so two reviewers can be signed in side by side)."""
    executable = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass(frozen=True)
class VideoState:
    """What a ``<video>`` element reported."""

    ready_state: int
    duration: float
    video_width: int
    video_height: int
    played_to: float  # currentTime reached while playing (muted)
    error: str | None  # MediaError code and message, if any


VIDEO_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>clip</title></head>
<body><video id="v" src="{src}" preload="auto" muted playsinline></video></body></html>
"""

_PROBE = """async ({playS, timeoutMs}) => {
  const v = document.getElementById("v");
  const deadline = Date.now() + timeoutMs;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  while (v.readyState < 4 && !v.error && Date.now() < deadline) await sleep(50);
  const loaded = {readyState: v.readyState, duration: v.duration};
  let playedTo = 0;
  if (!v.error && v.readyState >= 2) {
    try { await v.play(); } catch (e) { /* reported below through currentTime */ }
    while (v.currentTime < playS && !v.ended && !v.error && Date.now() < deadline) {
      await sleep(50);
    }
    playedTo = v.currentTime;
    v.pause();
  }
  return {
    readyState: loaded.readyState,
    duration: loaded.duration,
    videoWidth: v.videoWidth,
    videoHeight: v.videoHeight,
    playedTo: playedTo,
    error: v.error ? `MediaError ${v.error.code}: ${v.error.message}` : null,
  };
}"""


def probe_video(
    context: BrowserContext,
    base_url: str,
    page_name: str,
    *,
    play_s: float = 1.0,
    timeout_s: float = 30.0,
) -> VideoState:
    """Open ``base_url/page_name`` (a page from :data:`VIDEO_PAGE`), load and play its video."""
    page = context.new_page()
    try:
        page.goto(f"{base_url}/{page_name}", wait_until="load")
        raw = page.evaluate(_PROBE, {"playS": play_s, "timeoutMs": int(timeout_s * 1000)})
    finally:
        page.close()
    return VideoState(
        ready_state=int(raw["readyState"]),
        duration=float(raw["duration"]),
        video_width=int(raw["videoWidth"]),
        video_height=int(raw["videoHeight"]),
        played_to=float(raw["playedTo"]),
        error=raw["error"],
    )


def write_video_page(directory: Path, clip_name: str, page_name: str = "clip.html") -> str:
    """Write a page showing ``clip_name`` (beside it in ``directory``); return its name."""
    (directory / page_name).write_text(VIDEO_PAGE.format(src=clip_name), encoding="utf-8")
    return page_name
