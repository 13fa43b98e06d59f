"""The key check of ``POST /v1/feedback``: the predict check, then a per-key feedback rate.

Feedback drives the canary judge, so it gets a budget of its own (``limits.feedback_rate_per_s``)
on top of the key's request rate: a client cannot flood a version with labels.
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

__all__ = ["feedback_check"]

def feedback_check(require_predict: KeyCheck, rate_per_s: float | None, metrics: ServeMetrics) -> KeyCheck:
    """A dependency answering the caller's key, or 429 ``rate_limited`` when it sends feedback too fast."""
    buckets = KeyedBuckets()

    async def require_feedback(key: Annotated[ApiKey, Depends(require_predict)]) -> ApiKey:
        if rate_per_s is None:
            return key
        wait = buckets.take(key.key_id, rate_per_s, max(1, math.ceil(2 * rate_per_s)))
        if wait > 0:
            metrics.rejected.labels("rate_limited").inc()
            retry = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"API key {key.key_id} sends feedback faster than limits.feedback_rate_per_s = {rate_per_s:g}/s; "
                f"retry after {retry} s.",
                {"Retry-After": str(retry)},
            )
        return key

    return require_feedback
