"""A throw-away PostgreSQL server for tests: Debian's binaries, 127.0.0.1, a temp dir.

PostgreSQL refuses to run as root; as root (CI, this machine) the server runs
as the ``postgres`` system user that Debian's package creates (``nobody`` if
there is none), in a fresh directory under /tmp that it owns. Only TCP on
127.0.0.1 on a free port is served, with trust authentication for the
superuser ``streetwatch``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from streetwatch.processes import end_process, free_port

PG_ROOT = Path("/usr/lib/postgresql")
PREFERRED_VERSION = "15"
SUPERUSER = "streetwatch"


class PostgresUnavailable(Exception):
    """PostgreSQL's server binaries are not installed."""


def postgres_bindir() -> Path:
    """Debian's PostgreSQL 15 binaries (or the newest installed version)."""
    candidates = [PG_ROOT / PREFERRED_VERSION / "bin"]
    if PG_ROOT.is_dir():
        versions = sorted(
            (p for p in PG_ROOT.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [p / "bin" for p in reversed(versions)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresUnavailable(
        f"PostgreSQL server binaries not found under {PG_ROOT}/<version>/bin "
        "(Debian: apt-get install postgresql; scripts/setup.sh test does this)"
    )


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither user postgres nor nobody exists")


def _others_can_enter(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


@dataclass
class PostgresServer:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def log(self) -> str:
        path = self.workdir / "postgres.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT to the postmaster), then SIGKILL; the directory is removed."""
        end_process(self.proc, timeout, signal.SIGINT, whole_group=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres(timeout: float = 60.0, fsync: bool = True) -> PostgresServer:
    """initdb a fresh cluster and start it on a free 127.0.0.1 port.

    ``fsync=False`` is faster but not crash-safe: tests that measure
    throughput keep the default.
    """
    bindir = postgres_bindir()
    user = _run_as()
    parent = tempfile.gettempdir()
    if user is not None and not _others_can_enter(Path(parent)):
        parent = "/tmp"  # the server's user must reach its directory
    workdir = Path(tempfile.mkdtemp(prefix="streetwatch-pg-", dir=parent))
    data = workdir / "data"
    data.mkdir(mode=0o700)
    if user is not None:
        for path in (workdir, data):
            os.chown(path, user.pw_uid, user.pw_gid)
    uid = user.pw_uid if user else None
    gid = user.pw_gid if user else None
    groups: list[int] | None = [] if user else None  # drop root's supplementary groups
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(workdir),
    }
    try:
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if init.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({init.returncode}): {init.stderr.decode(errors='replace')}"
            )
        port = free_port()
        log = (workdir / "postgres.log").open("ab")
        proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                f"fsync={'on' if fsync else 'off'}",
                "-c",
                "max_connections=50",
            ],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        log.close()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    server = PostgresServer(proc, port, workdir)
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {server.proc.returncode}:\n{server.log()[-2000:]}"
            )
        try:
            with psycopg.connect(server.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"postgres not ready after {timeout}s: {last}\n{server.log()[-2000:]}")


if __name__ == "__main__":  # a server to poke at by hand: python -m tests.support.postgres_server
    running = start_postgres()
    print(running.url, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        running.stop()
