"""Running the workbench: uvicorn serving :func:`centre.review.app.create_app`."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from centre.config import CentreServiceConfig
from centre.review.app import create_app

log = logging.getLogger("streetwatch.review")

#: on stop, how long requests under way may take before they are cancelled. A browser's
#: live feed (/events, server-sent events) never ends by itself, so without a limit one open
#: tab would hold the stop until Docker (or systemd) kills the process.
STOP_S = 10


async def serve(cfg: CentreServiceConfig, stop: asyncio.Event) -> None:
    """Serve the workbench on ``[review] host:port`` until ``stop`` is set."""
    app = create_app(cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.review.host,
            port=cfg.review.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            proxy_headers=False,  # the throttle keys on the peer address; no header may change it
            timeout_graceful_shutdown=STOP_S,
        )
    )
    # the caller owns SIGINT/SIGTERM (``stop``); uvicorn's own handlers are not installed
    task = asyncio.create_task(server._serve())
    log.info("event=review_serving url=http://%s:%d/", cfg.review.host, cfg.review.port)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task
    stopper.cancel()
