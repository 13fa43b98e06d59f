"""``POST /v1/explain``: which words of a text pushed the served classifier toward its label.

One text per request, explained by :func:`lmforge.predict.explain` on the predictor the stable
version already holds (integrated gradients on a torch model, occlusion on an ONNX variant), in
a worker thread. It costs tens of forward passes, so it is budgeted three ways: the predict
key's own rate for explanations (``limits.explain_rate_per_s``), the server's admission control
(admitted as ``limits.explain_steps`` texts of work, at most ``limits.max_texts``): it never
queues behind the batcher, it is admitted or refused at once. Only the ``local`` backend holds
its predictors in this process; on Ray the route answers 501.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signature at runtime, and the
# request model is a local class built from this app's limits.

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lmforge.errors import ConfigError
from lmforge.predict import EXPLAIN_METHODS, explain
from lmforge.serve._dependencies import KeyCheck, runtime_of
from lmforge.serve._engines import LocalEngine
from lmforge.serve._errors import ApiError
from lmforge.serve._extensions import admitted
from lmforge.serve._feedback import explain_check
from lmforge.serve._http_errors import AUTH_ERRORS, BODY_ERRORS, responses
from lmforge.serve._keys import ApiKey
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._schemas import ModelName
from lmforge.serve._settings import ServeSettings

__all__ = ["explain_router"]


def explain_router(settings: ServeSettings, metrics: ServeMetrics, require_predict: KeyCheck) -> APIRouter:
    """``POST /v1/explain`` behind the predict key and its explanation rate."""
    limits = settings.limits
    text_type = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_text_chars)]
    method_doc = ", ".join(EXPLAIN_METHODS)

    class ExplainRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "lost my bag again"}]})

        text: text_type = Field(description=f"The text to explain (at most {limits.max_text_chars} characters).")
        label: str | None = Field(default=None, description="Explain this label (default: the predicted one).")
        method: str = Field(default="auto", description=f"One of {method_doc}.")
        top: int | None = Field(default=None, ge=1, le=512, description="Only the `top` strongest words.")
        model: ModelName | None = Field(default=None, description="Model name; default: the server's default.")

    ExplainKey = Annotated[ApiKey, Depends(explain_check(require_predict, limits.explain_rate_per_s, metrics))]
    router = APIRouter(tags=["predict"])

    @router.post(
        "/v1/explain",
        summary="Explain a prediction (per-word attributions)",
        responses=responses(*AUTH_ERRORS, *BODY_ERRORS, 404, 501),
    )
    async def explain_route(body: ExplainRequest, request: Request, key: ExplainKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        slot = runtime.resolve(body.model)
        loaded = slot.stable
        if loaded is None or not isinstance(loaded.engine, LocalEngine) or loaded.engine.predictor is None:
            raise ApiError(501, "not_supported", "Explanations need a classifier served by the local backend "
                                                 f"(this server's is {settings.backend!r}, or the model generates text).")
        predictor = loaded.engine.predictor
        with admitted(request, min(limits.explain_steps, limits.max_texts)):  # a full request's worth at most
            try:
                (explanation,) = await asyncio.to_thread(
                    explain, predictor, [body.text], label=body.label, method=body.method, steps=limits.explain_steps
                )
            except ConfigError as exc:  # an unknown label or method, or integrated gradients on ONNX
                raise ApiError(422, "invalid_request", str(exc)) from None
        metrics.explanations.labels(explanation.method).inc()
        return {"model": loaded.model, "version": loaded.version, "text": body.text,
                **explanation.to_dict(top=body.top)}

    return router
