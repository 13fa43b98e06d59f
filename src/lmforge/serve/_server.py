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
from collections.abc import Sequence
from typing import Any

from lmforge._extras import require
from lmforge.guard import audit_log_from_env
from lmforge.serve._db import connect
from lmforge.serve._registry import ModelRegistry
from lmforge.serve._settings import ServeSettings
from lmforge.serve._source import ensure_source

__all__ = ["prepare", "run_server"]


def prepare(settings: ServeSettings) -> ServeSettings:
    """Register and activate the served run before the server starts, so a refused run fails fast.

    Returns:
        The settings to start the app with (the run is then served from the registry).
    """
    if settings.source is None:
        return settings
    engine, tables = connect(settings.database_url)
    try:
        registry = ModelRegistry(engine, tables, audit_log_from_env(settings.audit_log_path))
        name = ensure_source(settings, registry, "lmforge-serve")
    finally:
        engine.dispose()
    return dataclasses.replace(settings, source=None, default_model=settings.default_model or name)


def run_server(settings: ServeSettings, extensions: Sequence[Any] = ()) -> None:
    """Serve until SIGTERM/SIGINT, then drain and exit (blocking); ``extensions``: an app's routes."""
    uvicorn = require("uvicorn", extra="serve", purpose="lmforge serve")
    # Sibling modules imported here, not at the top: they import uvicorn and FastAPI (the serve extra).
    from lmforge.serve._app import create_app
    from lmforge.serve._draining import DrainingServer

    lmforge_log = logging.getLogger("lmforge")
    if lmforge_log.getEffectiveLevel() > logging.INFO:
        # A server's log says what it loaded and what it monitors against, beside uvicorn's own lines.
        lmforge_log.setLevel(logging.INFO)
    settings = prepare(settings)
    app = create_app(settings, extensions)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        limit_concurrency=settings.limits.max_connections,
        timeout_keep_alive=settings.limits.keep_alive_s,
    )
    server = DrainingServer(config, app, settings.drain_s)
    server.run()
