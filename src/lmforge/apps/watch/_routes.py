"""The live watch's routes: ``POST /v1/ingest``, ``GET /v1/watch`` (JSON) and ``GET /watch`` (the page).

``/v1/ingest`` takes the ``predict`` role and one admission slot of the server (the same in-flight
and queue limits as ``/v1/predict``, the same 429), at most ``limits.max_texts`` items per request;
the batch is scored in a worker thread. ``/v1/watch`` and ``/watch`` take a ``predict`` key, or an
admin's dashboard login in a browser (``ServeContext.require_page``).
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

import asyncio
from typing import Annotated, Any

import prometheus_client as pc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lmforge.apps.watch._page import PAGE_HEADERS, render_page
from lmforge.serve import ApiError, ServeContext, admitted

__all__ = ["watch_router"]


def watch_router(ext: Any, context: ServeContext) -> APIRouter:
    """The routes of one :class:`~lmforge.apps.watch._server.WatchExtension`."""
    limits = context.settings.limits
    cfg = ext.cfg
    rows = pc.Counter("lmforge_watch_rows", "Rows POSTed to /v1/ingest, by outcome (accepted, late, malformed).",
                      ["outcome"], registry=context.metrics.registry)
    alerts = pc.Counter("lmforge_watch_alerts", "Alerts raised by the live watch.", registry=context.metrics.registry)
    Key = Annotated[Any, Depends(context.require_predict)]
    Page = Annotated[Any, Depends(context.require_page or context.require_predict)]

    class IngestRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[Any] = Field(
            min_length=1, max_length=limits.max_texts,
            description=f"1 to {limits.max_texts} dated texts, in time order: objects with '{cfg.time_field}' "
            f"(a timestamp), '{cfg.text_field}' (at most {limits.max_text_chars} characters) and optionally "
            "'topic' (used instead of the topic run's). Malformed items are counted and skipped.",
        )

    router = APIRouter()

    def started() -> Any:
        if not ext.ready():
            raise ApiError(503, "not_ready", "The watch is still loading its models; retry in a moment.",
                           {"Retry-After": "1"})
        return ext

    @router.post("/v1/ingest", summary="Score a batch of dated texts and feed the live watch")
    async def ingest(body: IngestRequest, request: Request, key: Key) -> dict[str, Any]:
        watch = started()
        with admitted(request, len(body.items)):
            result: dict[str, Any] = await asyncio.to_thread(watch.ingest, body.items, limits.max_text_chars)
        for outcome in ("accepted", "late", "malformed"):
            rows.labels(outcome).inc(result[outcome])
        alerts.inc(len(result["alerts"]))
        return result

    @router.get("/v1/watch", summary="The live watch's per-topic timeline: windows, counts, shares, baselines, alerts")
    async def timeline(key: Page) -> dict[str, Any]:
        view, _ = started().snapshot()
        return dict(view)

    @router.get("/watch", response_class=HTMLResponse, include_in_schema=False)
    async def page(key: Page) -> Response:
        view, verdicts = started().snapshot()
        return HTMLResponse(render_page(view, verdicts), headers=PAGE_HEADERS)

    return router
