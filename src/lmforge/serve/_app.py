"""The FastAPI app factory: routes, error bodies, auth dependencies, lifespan.

``create_app(settings)`` builds an app whose lifespan opens the registry, loads every
active model (verified), starts monitoring when configured, and yields the typed state
(``runtime``, ``auth``) that routes reach through dependencies; on shutdown it finishes
every queued request, then frees the models. No module-level state: several apps live in
one process, each with its own Prometheus registry.

Every error, 4xx and 5xx, has the body ``{"error": {"code", "message"[, "details"]}}``,
FastAPI's validation errors and unknown routes included.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime,
# and the predict request model is a local class built from this app's limits.

import asyncio
import contextlib
import json
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge import __version__
from lmforge.errors import LmforgeError, MissingExtraError
from lmforge.serve._admission import Overloaded
from lmforge.serve._auth import Authenticator
from lmforge.serve._batcher import DeadlineExceeded
from lmforge.serve._errors import ApiError, ServeError
from lmforge.serve._keys import ApiKey, KeyStore
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._middleware import BodyLimitMiddleware, MetricsMiddleware, error_body
from lmforge.serve._names import NAME_PATTERN
from lmforge.serve._registry import ModelInfo, ModelRegistry
from lmforge.serve._runtime import ModelFailed, Runtime
from lmforge.serve._schemas import (
    CanaryRequest,
    ErrorResponse,
    HealthResponse,
    ModelOut,
    ModelsResponse,
    PredictResponse,
    ReadyResponse,
    RegisterRequest,
    RollbackResponse,
    VersionOut,
    VersionsResponse,
    predict_request_model,
)
from lmforge.serve._settings import ServeSettings

__all__ = ["build_runtime", "create_app"]

log = logging.getLogger("lmforge.serve")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}
_WHY = {
    400: "Malformed request (e.g. the body is not valid JSON).",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key lacks the role this route needs.",
    404: "No such model or version.",
    409: "The request contradicts the registry's state.",
    413: "Request body over the configured limit.",
    415: "The body is not sent as JSON (Content-Type: application/json).",
    422: "Invalid request: the message names the field and the limit.",
    429: "Rate limit or capacity reached; retry after the Retry-After header's seconds.",
    500: "The model failed on this request.",
    503: "Not ready, draining, or the request's deadline passed while it was queued (Retry-After).",
    504: "The request's deadline passed during inference.",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _WHY[code]} for code in codes}


def _json_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Like :func:`_responses`, spelled out as JSON: with ``model``, FastAPI would document them in the
    route's own media type (text/html for the dashboard)."""
    ref = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
    return {code: {"description": _WHY[code], "content": {"application/json": ref}} for code in codes}


def _json_error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, details), status_code=status, media_type="application/json", headers=headers
    )


def build_runtime(settings: ServeSettings, metrics: ServeMetrics) -> Runtime:
    """Open the registry database and the audit log, and start the inference backend."""
    from lmforge.guard import audit_log_from_env
    from lmforge.serve._db import connect
    from lmforge.serve._engines import build_backend

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


def _actor(key: ApiKey) -> str:
    return f"api-key:{key.key_id} ({key.name})"


def create_app(settings: ServeSettings) -> FastAPI:
    """The lmforge HTTP app for ``settings`` (run it with uvicorn, or :func:`lmforge.serve.run_server`)."""
    metrics = ServeMetrics()
    limits = settings.limits
    predict_request = predict_request_model(limits.max_texts, limits.max_text_chars)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        runtime = build_runtime(settings, metrics)  # Ray (if used) must start on the main thread
        monitor = None
        try:
            if settings.source is not None:
                from lmforge.serve._source import ensure_source

                await asyncio.to_thread(ensure_source, settings, runtime.registry, "lmforge-serve")
            await runtime.start()
            if settings.monitor is not None:
                monitor = _start_monitor(app, settings, runtime, metrics)
                runtime.monitor = monitor
            yield {"runtime": runtime, "auth": Authenticator(runtime.keys, settings.auth)}
        finally:
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
        openapi_url=None,  # served below, optionally behind a key
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.draining = False
    app.state.monitor_router = None
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)
    _add_error_handlers(app, settings)

    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key itself")

    def require(role: str) -> Any:
        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
            x_api_key: Annotated[str | None, Security(api_key_header)],
        ) -> ApiKey:
            auth: Authenticator = request.state.auth
            key = await auth.authenticate(credentials.credentials if credentials is not None else x_api_key)
            auth.authorize(key, role)
            try:
                auth.throttle(key)
            except ApiError:
                metrics.rejected.labels("rate_limited").inc()
                raise
            return key

        dependency.__name__ = f"require_{role}"
        return dependency

    require_predict = require("predict")
    require_admin = require("admin")
    PredictKey = Annotated[ApiKey, Depends(require_predict)]
    AdminKey = Annotated[ApiKey, Depends(require_admin)]
    app.state.require_predict = require_predict
    app.state.require_admin = require_admin

    def runtime_of(request: Request) -> Runtime:
        return request.state.runtime  # type: ignore[no-any-return]

    auth_errors = (401, 429)
    admin_errors = (401, 403, 429)
    body_errors = (400, 413, 415, 422)

    # -- health and metrics ---------------------------------------------------------------------
    @app.get("/healthz", response_model=HealthResponse, tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=ReadyResponse,
        tags=["health"],
        summary="Readiness",
        responses=_responses(503),
    )
    async def readyz(request: Request) -> Any:
        runtime = runtime_of(request)
        if request.app.state.draining or runtime.draining:
            return _json_error(503, "draining", "The server is shutting down.", headers={"Retry-After": "1"})
        if not runtime.ready:
            return _json_error(503, "not_ready", "No model is loaded yet.", headers={"Retry-After": "1"})
        models = {
            name: {
                "stable": s.stable.version if s.stable else None,
                "canary": s.canary.version if s.canary else None,
            }
            for name, s in runtime.slots.items()
        }
        return {"status": "ready", "models": models}

    metrics_deps = [Depends(require_predict)] if settings.auth.metrics_auth else []

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        dependencies=metrics_deps,
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format.",
            },
            **_responses(*(auth_errors if settings.auth.metrics_auth else ())),
        },
    )
    async def metrics_route(request: Request) -> Response:
        runtime = runtime_of(request)
        for name, queued in runtime.queued_texts().items():
            metrics.queue_depth.labels(name).set(queued)
        metrics.in_flight.set(runtime.admission.in_flight)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # -- prediction ------------------------------------------------------------------------------
    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        summary="Classify texts",
        responses=_responses(*auth_errors, *body_errors, 404, 500, 503, 504),
    )
    async def predict(body: predict_request, request: Request, key: PredictKey) -> Response:  # type: ignore[valid-type]
        runtime = runtime_of(request)
        texts: list[str] = body.texts  # type: ignore[attr-defined]
        try:
            slot = runtime.admission.admit(len(texts))
        except Overloaded as exc:
            metrics.rejected.labels("overloaded").inc()
            raise ApiError(
                429,
                "overloaded",
                f"The server is at capacity ({exc.reason}); retry after {exc.retry_after} s.",
                {"Retry-After": str(exc.retry_after)},
            ) from None
        try:
            outcome = await runtime.predict(body.model, texts)  # type: ignore[attr-defined]
        except DeadlineExceeded as exc:
            metrics.rejected.labels("deadline").inc()
            timeout = limits.request_timeout_s
            if exc.queued:
                raise ApiError(
                    503,
                    "deadline_exceeded",
                    f"The request waited longer than its {timeout:g} s "
                    "deadline in the queue; the server is overloaded.",
                    {"Retry-After": str(runtime.admission.retry_after())},
                ) from None
            raise ApiError(
                504, "deadline_exceeded", f"The model did not answer within the {timeout:g} s deadline."
            ) from None
        except ModelFailed:
            raise ApiError(
                500, "model_error", "The model failed on this request; the server log has the details."
            ) from None
        finally:
            runtime.admission.release(slot)
        predictions = runtime.to_predictions(outcome.loaded, outcome.proba)
        runtime.record(outcome, texts, predictions)
        payload = {
            "model": outcome.loaded.model,
            "version": outcome.loaded.version,
            "predictions": predictions,
        }
        return Response(json.dumps(payload), media_type="application/json")

    # -- registry (admin) ------------------------------------------------------------------------
    Name = Annotated[str, Path(pattern=NAME_PATTERN, min_length=1, max_length=64, description="Model name.")]
    Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number.")]

    def model_out(runtime: Runtime, info: ModelInfo) -> dict[str, Any]:
        slot = runtime.slots.get(info.name)
        loaded = None
        if slot is not None:
            loaded = {
                "stable": slot.stable.version if slot.stable else None,
                "canary": slot.canary.version if slot.canary else None,
                "queued_texts": runtime.queued_texts().get(info.name, 0),
                "load_error": slot.load_error,
            }
        return {**info.to_dict(), "loaded": loaded}

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        tags=["registry"],
        summary="List models",
        responses=_responses(*admin_errors),
    )
    async def list_models(request: Request, _: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        models = await asyncio.to_thread(runtime.registry.list_models)
        return {"models": [model_out(runtime, m) for m in models]}

    @app.get(
        "/v1/models/{name}/versions",
        response_model=VersionsResponse,
        tags=["registry"],
        summary="List a model's versions",
        responses=_responses(*admin_errors, 404, 422),
    )
    async def list_versions(request: Request, name: Name, _: AdminKey) -> dict[str, Any]:
        versions = await asyncio.to_thread(runtime_of(request).registry.list_versions, name)
        return {"model": name, "versions": [v.to_dict() for v in versions]}

    @app.post(
        "/v1/models/{name}/versions",
        response_model=VersionOut,
        status_code=201,
        tags=["registry"],
        summary="Register a run as a new version",
        responses=_responses(*admin_errors, *body_errors, 409),
    )
    async def register_version(
        body: RegisterRequest, request: Request, name: Name, key: AdminKey
    ) -> dict[str, Any]:
        info = await runtime_of(request).register(
            name, body.run, body.variant, activate=body.activate, actor=_actor(key)
        )
        return info.to_dict()

    @app.post(
        "/v1/models/{name}/versions/{version}/activate",
        response_model=ModelOut,
        tags=["registry"],
        summary="Activate a version (hot swap)",
        responses=_responses(*admin_errors, 404, 409, 422),
    )
    async def activate(request: Request, name: Name, version: Version, key: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        info = await runtime.activate(name, version, actor=_actor(key))
        return model_out(runtime, info)

    @app.post(
        "/v1/models/{name}/canary",
        response_model=ModelOut,
        tags=["registry"],
        summary="Route a share of traffic to a candidate version",
        responses=_responses(*admin_errors, *body_errors, 404, 409),
    )
    async def canary(body: CanaryRequest, request: Request, name: Name, key: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        info = await runtime.set_canary(name, body.version, body.percent, actor=_actor(key))
        return model_out(runtime, info)

    @app.post(
        "/v1/models/{name}/rollback",
        response_model=RollbackResponse,
        tags=["registry"],
        summary="Stop the canary, or re-activate the previous version",
        responses=_responses(*admin_errors, 404, 409, 422),
    )
    async def rollback(request: Request, name: Name, key: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        info, done = await runtime.rollback(name, actor=_actor(key))
        return {"model": model_out(runtime, info), **done}

    # -- schema and docs -------------------------------------------------------------------------
    docs_deps = [Depends(require_predict)] if settings.auth.docs_auth else []

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_deps)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_deps)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="lmforge API")

    return app


def _start_monitor(app: FastAPI, settings: ServeSettings, runtime: Runtime, metrics: ServeMetrics) -> Any:
    """Start monitoring, mount its routes (once per app) and register its collector."""
    from lmforge._lazy import require

    monitor_mod = require("lmforge.monitor", extra="serve", purpose="Monitoring predictions")
    labels: list[str] = []
    for slot in sorted(runtime.slots.values(), key=lambda s: s.name != settings.default_model):
        if slot.stable is not None:
            labels = slot.stable.labels
            break
    monitor = monitor_mod.Monitor(settings.monitor, labels=labels)
    monitor.start()
    if app.state.monitor_router is None:
        app.state.monitor_router = monitor.router(
            require_predict=app.state.require_predict, require_admin=app.state.require_admin
        )
        # Its routes sit behind this app's key dependencies: document what those answer.
        app.include_router(
            app.state.monitor_router, responses=_json_responses(400, 401, 403, 413, 415, 422, 429)
        )
        app.openapi_schema = None  # regenerate with the monitoring routes
    app.state.monitor_collector = monitor.collector()
    metrics.register(app.state.monitor_collector)
    return monitor


def _add_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    limits = settings.limits

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _json_error(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _json_error(
            exc.status_code,
            _CODES.get(exc.status_code, "error"),
            message,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        content_type = request.headers.get("content-type", "")
        if (
            any(tuple(e.get("loc", ())) == ("body",) for e in errors)
            and request.method in ("POST", "PUT")
            and "json" not in content_type.lower()
        ):
            return _json_error(
                415,
                "unsupported_media_type",
                f"Send the body as JSON with 'Content-Type: application/json' (got {content_type[:60]!r}).",
            )
        details = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "type": str(e.get("type", "")),
                "msg": str(e.get("msg", "")),
            }
            for e in errors
        ]  # never the input: it may hold texts
        if any(e.get("type") == "json_invalid" for e in errors):
            return _json_error(400, "invalid_json", "The request body is not valid JSON.", details)
        for d in details:  # name the setting behind a limit, so the message says what to change
            if d["loc"][:2] == ["body", "texts"] and d["type"] == "too_long" and len(d["loc"]) == 2:
                d["msg"] += f" (limits.max_texts = {limits.max_texts} texts per request)"
            elif d["loc"][:2] == ["body", "texts"] and d["type"] == "string_too_long":
                d["msg"] += f" (limits.max_text_chars = {limits.max_text_chars} characters per text)"
        message = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])
        return _json_error(422, "validation_error", message or "Invalid request.", details)

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> Response:
        return _json_error(exc.status, exc.code, str(exc))

    @app.exception_handler(LmforgeError)
    async def lmforge_error(_: Request, exc: LmforgeError) -> Response:
        if isinstance(exc, MissingExtraError):
            log.error("%s", exc)
            return _json_error(500, "internal_error", str(exc))
        return _json_error(422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        # The traceback without the exception's message: a message may quote a request text.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("internal error: %s\n%s", type(exc).__name__, frames)
        return _json_error(500, "internal_error", "Internal server error; the server log has the details.")
