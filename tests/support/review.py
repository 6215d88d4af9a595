"""The review workbench as a real process, for the workbench tests and the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from core.kafka import KafkaConfig
from streetwatch.processes import Child, free_port, wait_for_port

#: users made for the tests: name -> (role, grids); every password is PASSWORD
USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "patrol1": ("patrol", ("曹杨新村街道",)),
    "patrol2": ("patrol", ("曹杨新村街道",)),
    "outsider": ("patrol", ("长风新村街道",)),
    "chief": ("supervisor", ()),
}
PASSWORD = "correct horse battery"


@dataclass
class Workbench:
    child: Child
    url: str
    config: Path

    def stop(self) -> int:
        return self.child.stop()


def write_config(
    tmp: Path,
    kafka: KafkaConfig,
    store_url: str,
    evidence_dir: Path,
    *,
    claim_s: float = 120.0,
    port: int | None = None,
) -> Path:
    """A centre config holding the workbench's sections."""
    path = tmp / "review.json"
    body = {
        "kafka": kafka.model_dump(),
        "store": {"url": store_url},
        "evidence": {"store_dir": str(evidence_dir)},
        "review": {
            "port": port or free_port(),
            "db": str(tmp / "review.db"),
            "claim_s": claim_s,
        },
    }
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return path


def add_users(config: Path, users: dict[str, tuple[str, tuple[str, ...]]] = USERS) -> None:
    """Through the real command, the password on standard input."""
    for name, (role, grids) in users.items():
        argv = [sys.executable, "-m", "streetwatch.cli", "review", "add-user"]
        argv += ["--config", str(config), name, "--role", role]
        for g in grids:
            argv += ["--grid", g]
        done = subprocess.run(argv, input=PASSWORD + "\n", capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def start(config: Path, log: Path, *, wait_feed: bool = True) -> Workbench:
    """``streetwatch review serve``; returns once it answers (and its feed is ready)."""
    port = json.loads(config.read_text(encoding="utf-8"))["review"]["port"]
    child = Child(
        "review",
        [sys.executable, "-m", "streetwatch.cli", "review", "serve", "--config", str(config)],
        log=log,
    )
    wait_for_port(port, 30, child.proc)
    url = f"http://127.0.0.1:{port}"
    if wait_feed:
        deadline = time.monotonic() + 60
        while True:
            health = _health(url)
            if health.get("feed") and health.get("producer"):
                break
            assert time.monotonic() < deadline, f"workbench not ready: {health}; see {log}"
            time.sleep(0.2)
    return Workbench(child, url, config)


def _health(url: str) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            body: dict[str, object] = json.loads(r.read())
            return body
    except OSError:
        return {}


class Session:
    """A signed-in HTTP client (cookies kept), for the security tests."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept": "text/html"}
        )

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    def csrf(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "csrftoken":
                return cookie.value
        return ""

    async def sign_in(self, user: str, password: str = PASSWORD) -> int:
        async with self.http.get(f"{self.base}/login") as r:
            assert r.status == 200
        form = {"username": user, "password": password, "csrftoken": self.csrf(), "next": "/"}
        async with self.http.post(f"{self.base}/login", data=form, allow_redirects=False) as r:
            return r.status

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(f"{self.base}{path}", allow_redirects=False) as r:
            return r.status, await r.text(errors="replace")

    async def post(
        self, path: str, form: Mapping[str, str | list[str]], *, token: bool = True
    ) -> tuple[int, str]:
        data: list[tuple[str, str]] = []
        for k, v in form.items():
            data += [(k, x) for x in v] if isinstance(v, list) else [(k, v)]
        if token:
            data.append(("csrftoken", self.csrf()))
        async with self.http.post(f"{self.base}{path}", data=data, allow_redirects=False) as r:
            return r.status, await r.text(errors="replace")
