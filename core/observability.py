"""A worker's operations endpoints: Prometheus metrics, liveness and readiness over HTTP.

:class:`OpsServer` serves, on the worker's own asyncio loop (aiohttp):

- ``GET /metrics``: the Prometheus text format of one
  :class:`~prometheus_client.CollectorRegistry` of the worker's own (never
  the library's global one). The worker's collectors read its counters when
  scraped, so the hot paths pay nothing for them; every worker adds its loop's
  lag and ``streetwatch_build_info{version="…"} 1`` (the release it runs);
- ``GET /healthz``: 200 while the process and its loop run, with the release's
  version and a few facts;
- ``GET /readyz``: 200 when the worker can do its job, 503 otherwise, the
  reasons in the JSON body (``{"ready": false, "reasons": ["kafka: ..."]}``).

An address that cannot be bound (taken, say) is logged and tried again
every :data:`RETRY_BIND_S`: the worker's job matters more than its metrics,
so it never stops the worker. Names follow Prometheus conventions
(:data:`METRIC_NAME`): ``streetwatch_`` first, snake_case, units as
suffixes, counters end in ``_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import AfterValidator

from core.version import streetwatch_version

log = logging.getLogger("streetwatch.ops")

PREFIX = "streetwatch_"
#: every metric family a worker serves
METRIC_NAME = re.compile(r"streetwatch_[a-z][a-z0-9]*(_[a-z0-9]+)*")
RETRY_BIND_S = 30.0
BEAT_S = 1.0

K = TypeVar("K")


def _listen(value: str) -> str:
    listen_address(value)  # raises on a bad value
    return value


def listen_address(value: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) as a pair; None for "" or port 0 (not served).
    Raises ValueError for anything else."""
    if not value:
        return None
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"'{value}' is not host:port (empty or port 0: not served)")
    return (host, int(port)) if int(port) else None


#: A listening address, ``host:port``; "" or port 0 for none.
ListenAddress = Annotated[str, AfterValidator(_listen)]


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``: the text format adds it)."""
    return CounterMetricFamily(name, doc, labels=list(labels))


def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def snapshot(counts: Mapping[K, int]) -> dict[K, int]:
    """A copy of a counter another thread may be adding keys to."""
    for _ in range(10):
        with contextlib.suppress(RuntimeError):  # changed size during iteration
            return dict(counts)
    return {}


@dataclass(frozen=True)
class Readiness:
    """Whether a worker can do its job: ready when no reason says otherwise."""

    reasons: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.reasons


Check = Callable[[], Readiness]


class LoopCollector:
    """The loop's lag: how late a one-second beat woke."""

    def __init__(self) -> None:
        self.started = time.time()
        self.lag_s = 0.0
        self.beats = 0

    async def beat(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(BEAT_S)
            self.lag_s = max(0.0, time.monotonic() - before - BEAT_S)
            self.beats += 1

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "streetwatch_event_loop_lag_seconds",
            "How late the worker's asyncio loop ran a one-second timer, last time",
            value=self.lag_s,
        )


class BuildInfoCollector:
    """``streetwatch_build_info{version="…"} 1``: the release the worker runs (an info-style
    gauge: join on it to see which boxes still run an older release)."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "streetwatch_build_info",
            "The streetwatch release this worker runs: always 1, the version is the label",
            labels=["version"],
        )
        family.add_metric([streetwatch_version()], 1)
        yield family


def new_registry() -> CollectorRegistry:
    """A registry of the worker's own with its process's CPU, memory and file metrics
    (``streetwatch_process_*``)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(namespace="streetwatch", registry=registry)
    return registry


class OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one worker at ``address``.

    ``ready`` (plain or async) decides ``/readyz``; ``facts`` adds to
    ``/healthz``. With ``in_thread``, a scrape and a readiness check run in a
    thread, so a slow collector (a database query) never holds the loop.
    """

    def __init__(
        self,
        service: str,
        address: tuple[str, int],
        registry: CollectorRegistry,
        ready: Check,
        *,
        facts: Callable[[], dict[str, object]] | None = None,
        in_thread: bool = True,
    ) -> None:
        self.service = service
        self.host, self.port = address
        self.registry = registry
        self.ready = ready
        self.facts = facts or dict
        self.in_thread = in_thread
        self.loop = LoopCollector()
        registry.register(self.loop)
        registry.register(BuildInfoCollector())
        self.bound = False
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
            ]
        )
        return app

    async def start(self) -> None:
        """Serve (or, if the address is taken, keep trying in the background)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        self._tasks.append(asyncio.create_task(self.loop.beat()))
        if not await self._bind(first=True):
            self._tasks.append(asyncio.create_task(self._bind_later()))

    async def _bind(self, first: bool) -> bool:
        assert self._runner is not None
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            log.log(
                logging.ERROR if first else logging.DEBUG,
                "event=http_unavailable service=%s address=%s error=%s: metrics and health "
                "not served; trying again every %.0fs",
                self.service,
                self.url,
                exc,
                RETRY_BIND_S,
            )
            return False
        self.bound = True
        log.info("event=http_serving service=%s url=%s", self.service, self.url)
        return True

    async def _bind_later(self) -> None:
        while True:
            await asyncio.sleep(RETRY_BIND_S)
            if await self._bind(first=False):
                return

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _call(self, work: Callable[[], object]) -> object:
        return await asyncio.to_thread(work) if self.in_thread else work()

    async def metrics(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await self._call(lambda: encode(self.registry))
        assert isinstance(body, bytes)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        body: dict[str, object] = {
            "status": "ok",
            "service": self.service,
            "version": streetwatch_version(),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.loop.started, 1),
            "loop_lag_s": round(self.loop.lag_s, 4),
            **self.facts(),
        }
        return web.json_response(body)

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            result = await self._call(self.ready)
        except Exception as exc:  # a failing check is an answer, not a crash
            log.exception("event=readiness_check_failed service=%s", self.service)
            result = Readiness([f"readiness check failed: {type(exc).__name__}: {exc}"])
        assert isinstance(result, Readiness)
        body = {"service": self.service, "ready": result.ready, "reasons": result.reasons}
        return web.json_response({**body, **result.facts}, status=200 if result.ready else 503)
