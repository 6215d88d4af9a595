"""A tiny HTTP MJPEG camera for tests: ``multipart/x-mixed-replace`` JPEG frames.

This is what cheap IP cameras serve at URLs like ``/video.mjpg``: one HTTP
response that never ends, each part a JPEG with its own headers. It runs in
a thread of the test process on 127.0.0.1 and loops over the given frames at
``fps``; every client gets its own stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOUNDARY = "streetwatchframe"


class MjpegServer:
    def __init__(self, jpegs: Sequence[bytes], fps: float = 10.0, path: str = "/cam") -> None:
        if not jpegs:
            raise ValueError("an MJPEG server needs at least one frame")
        self.jpegs = list(jpegs)
        self.fps = fps
        self.path = path
        self.closing = threading.Event()
        self.frames_sent = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="mjpeg-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != server.path:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                server._stream(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        period = 1.0 / self.fps
        due = time.monotonic()
        n = 0
        while not self.closing.is_set():
            jpeg = self.jpegs[n % len(self.jpegs)]
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            ).encode("ascii")
            try:
                handler.wfile.write(head + jpeg + b"\r\n")
                handler.wfile.flush()
            except OSError:  # the client went away
                return
            n += 1
            self.frames_sent += 1
            due += period
            self.closing.wait(max(0.0, due - time.monotonic()))
