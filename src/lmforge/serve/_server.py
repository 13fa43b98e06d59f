"""Run the app under uvicorn, with a drain period on SIGTERM.

Shutdown order on SIGTERM (or Ctrl-C):

1. ``/readyz`` turns 503 at once while every route keeps serving, for ``drain_s`` seconds,
   so a load balancer stops sending new traffic;
2. uvicorn stops accepting connections and waits (up to ``graceful_timeout_s``) for every
   in-flight request to be answered;
3. the lifespan shuts down: queued work finishes, models and monitoring are closed.

A second signal skips the rest of the drain; a third one exits at once. The process exits
with status 0 after a graceful shutdown.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from lmforge._lazy import require
from lmforge.serve._settings import ServeSettings

__all__ = ["prepare", "run_server"]

log = logging.getLogger("lmforge.serve")


def prepare(settings: ServeSettings) -> ServeSettings:
    """Register and activate the served run before the server starts, so a refused run fails fast.

    Returns:
        The settings to start the app with (the run is then served from the registry).
    """
    if settings.source is None:
        return settings
    from lmforge.guard import audit_log_from_env
    from lmforge.serve._db import connect
    from lmforge.serve._registry import ModelRegistry
    from lmforge.serve._source import ensure_source

    engine, tables = connect(settings.database_url)
    try:
        registry = ModelRegistry(engine, tables, audit_log_from_env(settings.audit_log_path))
        name = ensure_source(settings, registry, "lmforge-serve")
    finally:
        engine.dispose()
    return dataclasses.replace(settings, source=None, default_model=settings.default_model or name)


def run_server(settings: ServeSettings) -> None:
    """Serve until SIGTERM/SIGINT, then drain and exit (blocking)."""
    uvicorn = require("uvicorn", extra="serve", purpose="lmforge serve")
    from lmforge.serve._app import create_app

    settings = prepare(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )
    server = _draining_server_class(uvicorn)(config, app, settings.drain_s)
    server.run()


def _draining_server_class(uvicorn: Any) -> type:
    class DrainingServer(uvicorn.Server):  # type: ignore[misc, name-defined]
        """uvicorn's server with a readiness drain before the graceful shutdown."""

        def __init__(self, config: Any, app: Any, drain_s: float) -> None:
            super().__init__(config)
            self.app = app
            self.drain_s = drain_s
            self.drain_until: float | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            # Unlike uvicorn, the signal is not re-raised after shutdown: a drained server exits 0.
            if self.drain_until is None and self.drain_s > 0 and not self.should_exit:
                self.app.state.draining = True
                self.drain_until = time.monotonic() + self.drain_s
                log.warning(
                    "draining: /readyz answers 503, requests are still served for %.1f s", self.drain_s
                )
            elif not self.should_exit:
                self.app.state.draining = True
                self.should_exit = True
            else:
                self.force_exit = True

        async def on_tick(self, counter: int) -> bool:
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                self.should_exit = True
            return bool(await super().on_tick(counter))

    return DrainingServer
