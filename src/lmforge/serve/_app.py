"""The FastAPI app factory: middleware, error bodies, routes, key dependencies, lifespan.

``create_app(settings)`` builds an app whose lifespan opens the registry, loads every
active model (verified), starts monitoring when configured, and yields the typed state
(``runtime``, ``auth``) that routes reach through dependencies; on shutdown it finishes
every queued request, then frees the models. No module-level state: several apps live in
one process, each with its own Prometheus registry.

The routes are in ``_routes_health`` (healthz, readyz, metrics, docs), ``_routes_predict``,
``_routes_generate`` (``/v1/generate``, ``/v1/chat/completions``), ``_routes_explain`` (``/v1/explain``), ``_routes_chat_page`` (``/chat``),
``_routes_admin`` (the model registry) and ``_routes_login`` (the dashboard's browser login, over
the app's own in-memory session store); every error body comes from ``_http_errors``. An application's
routes come in as :class:`~lmforge.serve._extensions.ServeExtension` objects (``_extensions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI

from lmforge import __version__
from lmforge._extras import require
from lmforge.guard import audit_log_from_env
from lmforge.predict import CAUSAL_LM
from lmforge.serve._auth import Authenticator
from lmforge.serve._db import connect
from lmforge.serve._dependencies import key_checks, page_check
from lmforge.serve._engines import build_backend
from lmforge.serve._extensions import ExtensionHost, ServeContext, ServeExtension
from lmforge.serve._feedback import feedback_check
from lmforge.serve._http_errors import add_error_handlers, json_responses
from lmforge.serve._keys import KeyStore
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._middleware import BodyLimitMiddleware, MetricsMiddleware
from lmforge.serve._registry import ModelRegistry
from lmforge.serve._routes_admin import admin_router
from lmforge.serve._routes_chat_page import chat_page_router
from lmforge.serve._routes_explain import explain_router
from lmforge.serve._routes_generate import generate_router
from lmforge.serve._routes_health import docs_router, health_router
from lmforge.serve._routes_login import login_redirect, login_router
from lmforge.serve._routes_predict import predict_router
from lmforge.serve._runtime import Runtime
from lmforge.serve._sessions import (
    LOGIN_ATTEMPTS_PER_MINUTE,
    MAX_SESSIONS,
    LoginRequired,
    LoginThrottle,
    SessionStore,
)
from lmforge.serve._settings import ServeSettings
from lmforge.serve._source import ensure_source

__all__ = ["build_runtime", "create_app"]

log = logging.getLogger(__name__)


def build_runtime(settings: ServeSettings, metrics: ServeMetrics) -> Runtime:
    """Open the registry database and the audit log, and start the inference backend."""
    engine, tables = connect(settings.database_url)
    audit = audit_log_from_env(settings.audit_log_path)
    registry = ModelRegistry(engine, tables, audit)
    keys = KeyStore(engine, tables)
    try:
        backend = build_backend(settings)
    except BaseException:
        engine.dispose()
        raise
    return Runtime(settings, engine=engine, registry=registry, keys=keys, backend=backend, metrics=metrics)


def create_app(settings: ServeSettings, extensions: Sequence[ServeExtension] = ()) -> FastAPI:
    """The lmforge HTTP app for ``settings`` (run it with uvicorn, or :func:`lmforge.serve.run_server`).

    Long because it wires the lifespan (registry, models, monitor, extensions), the key checks,
    the routers and the middleware of one app, in the order they depend on each other.
    """
    names = [ext.name for ext in extensions]
    if len(set(names)) != len(names):
        raise ValueError(f"extension names must be unique, got {names}")
    metrics = ServeMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        runtime = build_runtime(settings, metrics)  # Ray (if used) must start on the main thread
        monitor = None
        started: list[ServeExtension] = []
        try:
            if settings.source is not None:
                await asyncio.to_thread(ensure_source, settings, runtime.registry, "lmforge-serve")
            await runtime.start()
            if settings.monitor is not None:
                monitor = _start_monitor(app, settings, runtime, metrics)
                runtime.monitor = monitor
            host = ExtensionHost(settings, monitor=monitor, database=runtime.db)
            for ext in extensions:
                log.info("starting the %s extension", ext.name)
                started.append(ext)
                await asyncio.to_thread(ext.start, host)
            yield {"runtime": runtime, "auth": Authenticator(runtime.keys, settings.auth), "extension_host": host}
        finally:
            for ext in reversed(started):
                try:
                    await asyncio.to_thread(ext.close)
                except Exception:
                    log.exception("closing the %s extension failed", ext.name)
            await runtime.close()
            if monitor is not None:
                with contextlib.suppress(Exception):
                    metrics.unregister(app.state.monitor_collector)
                await asyncio.to_thread(monitor.close)

    app = FastAPI(
        title="lmforge",
        version=__version__,
        description="Text classification served by lmforge: micro-batched predictions, a model registry with "
        'canary rollout, API keys. Every error has the body {"error": {"code", "message"}}.',
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by docs_router, optionally behind a key
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.draining = False
    app.state.monitor_router = None
    # Browser sessions of the dashboard: this app's own, in memory (a restart logs everyone out).
    sessions = app.state.sessions = SessionStore(settings.auth.session_ttl_s, MAX_SESSIONS)
    require_predict, require_admin = key_checks(metrics, sessions)
    app.state.require_predict = require_predict
    app.state.require_admin = require_admin
    app.state.extensions = tuple(extensions)
    context = ServeContext(settings, metrics, require_predict, require_admin, page_check(metrics, sessions))
    routers = [
        health_router(settings, metrics, require_predict),
        predict_router(settings, metrics, require_predict),
        generate_router(settings, metrics, require_predict),
        explain_router(settings, metrics, require_predict),
        admin_router(require_admin, require_predict),
        chat_page_router(),
        docs_router(settings, require_predict),
        login_router(settings, sessions, LoginThrottle(LOGIN_ATTEMPTS_PER_MINUTE)),
        *(ext.router(context) for ext in extensions),
    ]

    def routes() -> list[Any]:
        # The templates a request answered before routing (413) is counted under. FastAPI may keep an
        # included router as one entry of app.routes, without its templates, so these routers add
        # theirs (monitoring's router, mounted by the lifespan, is not one of them).
        return [*app.routes, *(route for router in routers for route in router.routes)]

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    add_error_handlers(app, settings)
    app.add_exception_handler(LoginRequired, login_redirect)
    for router in routers:
        app.include_router(router)
    return app


def _start_monitor(app: FastAPI, settings: ServeSettings, runtime: Runtime, metrics: ServeMetrics) -> Any:
    """Start monitoring, mount its routes (once per app) and register its collector."""
    monitor_mod = require("lmforge.monitor", extra="serve", purpose="Monitoring predictions")
    served = next((slot.stable for slot in sorted(runtime.slots.values(), key=lambda s: s.name != settings.default_model)
                   if slot.stable is not None), None)
    labels: list[str] = served.labels if served is not None else []
    monitor_settings = settings.monitor
    generative = served is not None and getattr(served.engine, "kind", None) == CAUSAL_LM
    if monitor_settings.reference_run is None and generative:
        log.info("monitor: the served model generates text; drift checks (of classifier inputs and outputs) are off")
    elif monitor_settings.reference_run is None and served is not None:
        # A served run is its own natural reference: its training data and model outputs.
        monitor_settings = dataclasses.replace(monitor_settings, reference_run=served.info.run_path)
        log.info("monitor: drift reference is the served run %s (model %s version %d); set monitor.reference_run "
                 "to use another", served.info.run_path, served.model, served.version)
    elif monitor_settings.reference_run is not None:
        log.info("monitor: drift reference is %s (monitor.reference_run)", monitor_settings.reference_run)
    else:
        log.warning("monitor: no model is loaded, so there is no drift reference; drift checks are off")
    # The reference's data and model are read on the server's behalf: verified with its policy, as every run it loads.
    monitor_settings = dataclasses.replace(
        monitor_settings,
        verify_reference=True,
        reference_public_key=monitor_settings.reference_public_key or settings.public_key,
        reference_allow_unsigned=monitor_settings.reference_allow_unsigned or settings.allow_unsigned,
    )
    monitor = monitor_mod.Monitor(monitor_settings, labels=labels)
    monitor.start()
    if app.state.monitor_router is None:
        app.state.monitor_router = monitor.router(
            require_predict=app.state.require_predict,
            require_admin=app.state.require_admin,
            require_feedback=feedback_check(
                app.state.require_predict, settings.limits.feedback_rate_per_s, metrics
            ),
        )
        # Its routes sit behind this app's key dependencies: document what those answer.
        app.include_router(
            app.state.monitor_router, responses=json_responses(400, 401, 403, 413, 415, 422, 429)
        )
        app.openapi_schema = None  # regenerate with the monitoring routes
    app.state.monitor_collector = monitor.collector()
    metrics.register(app.state.monitor_collector)
    return monitor
