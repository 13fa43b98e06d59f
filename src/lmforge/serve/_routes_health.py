"""Routes for probes and operators: liveness, readiness, Prometheus metrics, the OpenAPI schema and its docs.

``/healthz`` and ``/readyz`` are public; ``/metrics`` needs a key of any role unless
``auth.metrics_auth`` is off, ``/docs`` and ``/openapi.json`` one when ``auth.docs_auth`` is on.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from lmforge.serve._dependencies import KeyCheck, runtime_of
from lmforge.serve._http_errors import AUTH_ERRORS, json_error, responses
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._schemas import HealthResponse, ReadyResponse
from lmforge.serve._settings import ServeSettings

__all__ = ["docs_router", "health_router"]


def health_router(settings: ServeSettings, metrics: ServeMetrics, require_predict: KeyCheck) -> APIRouter:
    """Liveness, readiness and metrics; ``require_predict`` guards ``/metrics`` when the settings say so."""
    router = APIRouter()

    @router.get("/healthz", response_model=HealthResponse, tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=ReadyResponse,
        tags=["health"],
        summary="Readiness",
        responses=responses(503),
    )
    async def readyz(request: Request) -> Any:
        runtime = runtime_of(request)
        if request.app.state.draining or runtime.draining:
            return json_error(503, "draining", "The server is shutting down.", headers={"Retry-After": "1"})
        if not runtime.ready:
            return json_error(503, "not_ready", "No model is loaded yet.", headers={"Retry-After": "1"})
        models = {
            name: {
                "stable": s.stable.version if s.stable else None,
                "canary": s.canary.version if s.canary else None,
            }
            for name, s in runtime.slots.items()
        }
        return {"status": "ready", "models": models}

    metrics_deps = [Depends(require_predict)] if settings.auth.metrics_auth else []

    @router.get(
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
            **responses(*(AUTH_ERRORS if settings.auth.metrics_auth else ())),
        },
    )
    async def metrics_route(request: Request) -> Response:
        runtime = runtime_of(request)
        for name, queued in runtime.queued_texts().items():
            metrics.queue_depth.labels(name).set(queued)
        metrics.in_flight.set(runtime.admission.in_flight)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return router


def docs_router(settings: ServeSettings, require_predict: KeyCheck) -> APIRouter:
    """The OpenAPI schema and its Swagger UI, behind ``require_predict`` when ``auth.docs_auth`` is on."""
    router = APIRouter()
    docs_deps = [Depends(require_predict)] if settings.auth.docs_auth else []

    @router.get("/openapi.json", include_in_schema=False, dependencies=docs_deps)
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    @router.get("/docs", include_in_schema=False, dependencies=docs_deps)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="lmforge API")

    return router
