"""Key checks with a budget of their own: the predict check, then a per-key rate for one route.

Feedback drives the canary judge, so it gets a budget of its own (``limits.feedback_rate_per_s``)
on top of the key's request rate: a client cannot flood a version with labels. An explanation
costs tens of forward passes, so ``POST /v1/explain`` has one too (``limits.explain_rate_per_s``).
"""

# No `from __future__ import annotations` here: FastAPI reads the dependency's signature at runtime.

import math
from typing import Annotated

from fastapi import Depends

from lmforge.serve._admission import KeyedBuckets
from lmforge.serve._dependencies import KeyCheck
from lmforge.serve._errors import ApiError
from lmforge.serve._keys import ApiKey
from lmforge.serve._metrics import ServeMetrics

__all__ = ["explain_check", "feedback_check"]


def feedback_check(require_predict: KeyCheck, rate_per_s: float | None, metrics: ServeMetrics) -> KeyCheck:
    """A dependency answering the caller's key, or 429 ``rate_limited`` when it sends feedback too fast."""
    return _rate_check(require_predict, rate_per_s, metrics, "sends feedback", "limits.feedback_rate_per_s")


def explain_check(require_predict: KeyCheck, rate_per_s: float | None, metrics: ServeMetrics) -> KeyCheck:
    """A dependency answering the caller's key, or 429 ``rate_limited`` when it asks for explanations too fast."""
    return _rate_check(require_predict, rate_per_s, metrics, "asks for explanations", "limits.explain_rate_per_s")


def _rate_check(require_predict: KeyCheck, rate_per_s: float | None, metrics: ServeMetrics, doing: str,
                setting: str) -> KeyCheck:
    buckets = KeyedBuckets()

    async def require_rate(key: Annotated[ApiKey, Depends(require_predict)]) -> ApiKey:
        if rate_per_s is None:
            return key
        wait = buckets.take(key.key_id, rate_per_s, max(1, math.ceil(2 * rate_per_s)))
        if wait > 0:
            metrics.rejected.labels("rate_limited").inc()
            retry = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"API key {key.key_id} {doing} faster than {setting} = {rate_per_s:g}/s; retry after {retry} s.",
                {"Retry-After": str(retry)},
            )
        return key

    return require_rate
