"""The predict route: admission, routing to the stable version or the canary, the batcher, the answer.

Refusals before the model runs are counted in ``lmforge_rejected_requests_total`` by reason;
the texts go to monitoring (when on) after the answer is built, never to a log.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signature at runtime, and the
# request model is a local class built from this app's limits.

import json
from typing import TYPE_CHECKING, Annotated, TypeAlias

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from lmforge.serve._batcher import DeadlineExceeded
from lmforge.serve._dependencies import KeyCheck, runtime_of
from lmforge.serve._errors import ApiError
from lmforge.serve._extensions import admitted
from lmforge.serve._http_errors import AUTH_ERRORS, BODY_ERRORS, responses
from lmforge.serve._keys import ApiKey
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._predictions import record, to_predictions
from lmforge.serve._runtime import ModelFailed
from lmforge.serve._schemas import PredictRequestBase, PredictResponse, predict_request_model
from lmforge.serve._settings import ServeSettings

__all__ = ["predict_router"]


def predict_router(settings: ServeSettings, metrics: ServeMetrics, require_predict: KeyCheck) -> APIRouter:
    """``POST /v1/predict`` with this app's limits, behind ``require_predict``."""
    limits = settings.limits
    if TYPE_CHECKING:
        PredictRequest: TypeAlias = PredictRequestBase  # what the app's own request model subclasses
    else:
        PredictRequest = predict_request_model(limits.max_texts, limits.max_text_chars)
    PredictKey = Annotated[ApiKey, Depends(require_predict)]
    router = APIRouter()

    @router.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        summary="Classify texts",
        responses=responses(*AUTH_ERRORS, *BODY_ERRORS, 404, 500, 503, 504),
    )
    async def predict(body: PredictRequest, request: Request, key: PredictKey) -> Response:
        runtime = runtime_of(request)
        texts: list[str] = body.texts
        with admitted(request, len(texts)):  # 429 when the server is at capacity
            try:
                outcome = await runtime.predict(body.model, texts)
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
        predictions = to_predictions(outcome.loaded, outcome.proba)
        record(runtime.monitor, outcome, texts, predictions, key.key_id)
        payload = {
            "model": outcome.loaded.model,
            "version": outcome.loaded.version,
            "predictions": predictions,
        }
        return Response(json.dumps(payload), media_type="application/json")

    return router
