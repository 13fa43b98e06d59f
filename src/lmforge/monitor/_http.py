"""The monitor's HTTP routes (FastAPI): feedback, summary and dashboard.

Errors are answered as ``{"error": {"code", "message"}}`` with 403 (a prediction of another key),
404 (unknown prediction), 409 (already labeled otherwise) or 422 (label not one of the model's);
all are documented in the OpenAPI schema. Feedback goes through its own key check
(``require_feedback``, by default ``require_predict``), which a server uses to rate-limit it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lmforge.monitor._errors import (
    FeedbackConflictError,
    FeedbackForbiddenError,
    InvalidLabelError,
    MonitorError,
    UnknownPredictionError,
)
from lmforge.monitor._protocol import MonitorLike

__all__ = ["ErrorBody", "ErrorDetail", "FeedbackRequest", "FeedbackResponse", "build_router"]


class FeedbackRequest(BaseModel):
    """The true label of a served prediction."""

    model_config = ConfigDict(extra="forbid")
    prediction_id: str = Field(
        min_length=1, max_length=64, description="The id returned by the predict endpoint."
    )
    label: str | None = Field(default=None, min_length=1, max_length=200,
                              description="The true label: one of the model's labels; for a generated answer "
                              "`up` or `down`.")
    correction: str | None = Field(default=None, min_length=1, max_length=20000,
                                   description="A generated answer's corrected text (instead of a label); stored "
                                   "under the monitor's text policy, PII masked.")


class FeedbackResponse(BaseModel):
    prediction_id: str
    label: str
    correct: bool = Field(description="Whether the model had predicted this label.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. unknown_prediction.")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(status: int, exc: MonitorError) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": exc.code, "message": str(exc)}})


def build_router(
    monitor: MonitorLike,
    require_predict: Callable[..., Any],
    require_admin: Callable[..., Any],
    require_feedback: Callable[..., Any] | None = None,
) -> APIRouter:
    """Routes bound to ``monitor``; the dependencies decide who may call them.

    ``require_feedback`` (default ``require_predict``) answers the caller's key: an object with
    ``key_id`` and ``role`` (``admin`` may override a label), or None where there are no keys.

    Long because it declares the three routes with their documented responses, each beside its handler.
    """
    router = APIRouter(tags=["monitor"])
    feedback_key = Depends(require_feedback or require_predict)

    @router.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        summary="Send the true label of a prediction",
        description="Only the key that asked for the prediction (or an admin key) may label it, and a label is "
        "final: sending it again is answered as before, another label needs an admin key.",
        responses={
            403: {"model": ErrorBody, "description": "The prediction was made for another API key."},
            404: {"model": ErrorBody, "description": "No prediction has this id."},
            409: {"model": ErrorBody, "description": "The prediction already has another label."},
            422: {"model": ErrorBody, "description": "The label is not one of the model's labels."},
        },
    )
    def feedback(body: FeedbackRequest, key: Any = feedback_key) -> Any:
        key_id = getattr(key, "key_id", None)
        admin = getattr(key, "role", None) == "admin"
        if (body.label is None) == (body.correction is None):
            return error_response(422, InvalidLabelError("Give exactly one of 'label' or 'correction'."))
        try:
            return monitor.add_feedback(body.prediction_id, body.label or "", key_id=key_id, admin=admin,
                                        correction=body.correction)
        except FeedbackForbiddenError as exc:
            return error_response(403, exc)
        except UnknownPredictionError as exc:
            return error_response(404, exc)
        except FeedbackConflictError as exc:
            return error_response(409, exc)
        except InvalidLabelError as exc:
            return error_response(422, exc)

    @router.get(
        "/v1/monitor/summary",
        dependencies=[Depends(require_admin)],
        summary="Store state, live accuracy, latest drift and alerts, as JSON",
    )
    def monitor_summary() -> dict[str, Any]:
        return monitor.summary()

    @router.get(
        "/dashboard",
        response_class=HTMLResponse,
        dependencies=[Depends(require_admin)],
        summary="The monitoring dashboard (self-contained HTML)",
        # The page is HTML but its errors are JSON: name the media type, or the schema would say text/html.
        responses={
            422: {
                "description": "A query parameter is malformed or repeated.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            }
        },
    )
    def dashboard(
        request: Request,
        minutes: float = Query(60.0, gt=0, le=60 * 24 * 31, description="Time range in minutes."),
        model: str | None = Query(None, max_length=200, description="Only this model."),
        version: str | None = Query(None, max_length=200, description="Only this version."),
    ) -> Response:
        repeated = [k for k in ("minutes", "model", "version") if len(request.query_params.getlist(k)) > 1]
        if repeated:  # FastAPI would silently keep the last value; say it instead
            message = (
                f"Query parameter(s) {', '.join(repeated)} given more than once; give each at most once."
            )
            return JSONResponse(
                status_code=422, content={"error": {"code": "invalid_query", "message": message}}
            )
        return HTMLResponse(monitor.dashboard_html(minutes, model, version))

    return router
