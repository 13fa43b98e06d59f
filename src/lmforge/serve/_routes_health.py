"""Routes for probes and operators: liveness, readiness, Prometheus metrics, the OpenAPI schema and its docs.

``/healthz`` and ``/readyz`` are public and tell an anonymous caller only ready or not (a valid
key of any role also sees which versions are loaded); ``/metrics`` needs a key of any role unless
``auth.metrics_auth`` is off, ``/docs`` and ``/openapi.json`` one when ``auth.docs_auth`` is on.
``/docs`` is off unless ``docs: true``; its assets are served from the ``swagger-ui-bundle``
package under ``/docs/assets/``, so the page needs no network.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from lmforge._extras import require
from lmforge.errors import MissingExtraError
from lmforge.serve._dependencies import KeyCheck, runtime_of
from lmforge.serve._errors import ApiError
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
        response_model_exclude_none=True,
        tags=["health"],
        summary="Readiness",
        responses=responses(503),
    )
    async def readyz(request: Request) -> Any:
        runtime = runtime_of(request)
        if request.app.state.draining or runtime.draining:
            return json_error(503, "draining", "The server is shutting down.", headers={"Retry-After": "1"})
        extensions = request.app.state.extensions
        # A model must be loaded, except on a server whose registry holds none and that answers
        # through its extensions alone (a recommender); every extension must be ready.
        models_ready = runtime.ready or (bool(extensions) and not runtime.slots and not runtime.draining)
        if not models_ready or not all(ext.ready() for ext in extensions):
            return json_error(503, "not_ready", "No model is loaded yet.", headers={"Retry-After": "1"})
        if not await _has_valid_key(request):
            return {"status": "ready"}
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


async def _has_valid_key(request: Request) -> bool:
    """Whether the request carries an active API key (any role); never an error, never throttled."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header[:7].lower() == "bearer " else request.headers.get("x-api-key")
    if not token:
        return False
    try:
        await request.state.auth.authenticate(token)
    except ApiError:
        return False
    return True


# The Swagger UI files /docs needs, by the name they are served under: nothing else is reachable.
_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


def swagger_ui_folder() -> Path:
    """The Swagger UI distribution inside the ``swagger-ui-bundle`` package."""
    bundle = require("swagger_ui_bundle", extra="serve", purpose="The /docs page (serve setting docs: true)")
    folder = Path(str(bundle.swagger_ui_path))
    missing = [name for name in _ASSETS if not (folder / name).is_file()]
    if missing:  # a broken install: the same fix as a missing one
        raise MissingExtraError("swagger_ui_bundle", "serve", f"The /docs page ({folder} lacks {', '.join(missing)})")
    return folder


def docs_router(settings: ServeSettings, require_predict: KeyCheck) -> APIRouter:
    """The OpenAPI schema and (with ``docs: true``) its Swagger UI, behind ``require_predict`` when
    ``auth.docs_auth`` is on."""
    router = APIRouter()
    docs_deps = [Depends(require_predict)] if settings.auth.docs_auth else []

    @router.get("/openapi.json", include_in_schema=False, dependencies=docs_deps)
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    if not settings.docs:
        return router
    folder = swagger_ui_folder()  # at start: a missing package fails now, not on the first visit

    @router.get("/docs", include_in_schema=False, dependencies=docs_deps)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="lmforge API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    @router.get("/docs/assets/{name}", include_in_schema=False, dependencies=docs_deps)
    async def docs_asset(name: str) -> Response:
        if name not in _ASSETS:
            raise ApiError(404, "not_found", f"No docs asset {name!r}.")
        return FileResponse(folder / name, media_type=_ASSETS[name], headers={"Cache-Control": "max-age=86400"})

    return router
