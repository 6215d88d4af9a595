"""Shared fixtures: real brokers on 127.0.0.1, started once per session."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streetwatch.brokers import RunningBroker, start_mosquitto, start_tansu
from tests.postgres_server import PostgresServer, PostgresUnavailable, start_postgres

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
BUS_JPG = ROOT / ".cache" / "media" / "bus.jpg"


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """Drop the log handlers a test added (a command run in-process sets up logging on
    the stderr pytest captured for that test and closes after it): left behind, every
    later record fails on the closed stream and prints a traceback, which slowed the
    sensor fuzz test enough under load for mosquitto to drop queued messages."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _require(path: Path, how: str) -> Path:
    if not path.is_file():
        pytest.fail(f"{path} is missing: {how}")
    return path


@pytest.fixture(scope="session")
def vtest_video() -> Path:
    return _require(VTEST, "install Debian's opencv-doc (make test does this as root)")


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    return _require(BUS_JPG, "run scripts/setup.sh test (make test does this)")


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    broker = start_tansu(tmp_path_factory.mktemp("tansu"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL on a free 127.0.0.1 port; skipped only if it is not installed."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):  # CI's setup installs it: missing there is a failure
            raise
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The server's maintenance database (tests wanting an empty one create their own)."""
    return postgres_server.url
