"""Shared fixtures: real brokers and PostgreSQL on 127.0.0.1, started once per session.

A test that uses one of them is an integration test and must say so with
``pytest.mark.integration``: collection fails otherwise (see
``pytest_collection_modifyitems``), so ``pytest -m "not integration"`` never
starts a server. The helpers these fixtures use live in ``tests/support/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from streetwatch.brokers import RunningBroker, start_mosquitto, start_tansu
from tests.support import faults
from tests.support.paths import BUS_JPG, PLATE_PNG, VTEST, ZIDANE_JPG
from tests.support.postgres_server import PostgresServer, PostgresUnavailable, start_postgres
from tests.support.rtsp import RtspServer, require_prerequisites

# fixtures that start (or hand out) a real server process: a test using any of them,
# directly or through another fixture, must be marked integration. rtsp_server is
# Debian's python3 running tests/support/rtsp_server.py (tests/support/rtsp.py).
SERVER_FIXTURES = frozenset(
    {"tansu", "mosquitto", "postgres_server", "postgres_url", "rtsp_server"}
)


def _unmarked(item: pytest.Item, fixtures: Iterable[str]) -> list[str]:
    """The server fixtures among ``fixtures`` if ``item`` is not marked integration."""
    if item.get_closest_marker("integration") is not None:
        return []
    return sorted(SERVER_FIXTURES.intersection(fixtures))


@pytest.hookimpl(tryfirst=True)  # before -m/-k deselect: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail collection when a test uses a server fixture without the integration mark."""
    unmarked = [
        f"{item.nodeid} (uses {', '.join(names)})"
        for item in items
        if (names := _unmarked(item, getattr(item, "fixturenames", ())))
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that start a broker or database must be marked "
            "@pytest.mark.integration (or pytestmark = pytest.mark.integration):\n  "
            + "\n  ".join(unmarked)
        )


@pytest.fixture(autouse=True)
def _server_fixtures_only_in_integration_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """The same check after the test, for fixtures fetched with ``request.getfixturevalue``
    (collection cannot see those)."""
    yield
    names = _unmarked(request.node, request.fixturenames)
    if names:
        pytest.fail(f"{request.node.nodeid} used {', '.join(names)} but is not marked integration")


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
def zidane_jpg() -> Path:
    return _require(ZIDANE_JPG, "run scripts/setup.sh test (make test does this)")


@pytest.fixture(scope="session")
def plate_png() -> Path:
    return _require(PLATE_PNG, "run scripts/setup.sh test (make test does this)")


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


@pytest.fixture(scope="session")
def rtsp_prerequisites() -> None:
    """Fail (not skip) with the package list when the RTSP test server cannot run here."""
    require_prerequisites()


@pytest.fixture
def rtsp_server(
    rtsp_prerequisites: None, tmp_path: Path, vtest_video: Path
) -> Iterator[RtspServer]:
    """tests/support/rtsp_server.py looping vtest.avi on a free port, one per test."""
    server = RtspServer(tmp_path, vtest_video)
    server.start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault tests' table (tests/support/faults.py), when any of them ran."""
    if faults.ROWS:
        terminalreporter.section("faults: alerts raised against cases delivered")
        terminalreporter.write_line(faults.table(faults.ROWS))
