"""What the serving layer hands to the monitor for every prediction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PredictionRecord", "new_prediction_id", "token_counts"]


def new_prediction_id() -> str:
    """A random, unguessable prediction id (32 hex characters)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PredictionRecord:
    """One served prediction, as the monitor stores it (the text is stored as the text policy says)."""

    id: str
    """Unique id returned to the client, which sends it back with feedback."""
    ts: float
    """Unix time of the prediction, in seconds."""
    model: str
    """Name of the model that answered."""
    version: str
    """Version of that model (registry version, run fingerprint...)."""
    text: str
    """The input text, in clear: the store applies ``text_policy`` before anything is written."""
    label: str
    """Predicted label."""
    confidence: float
    """Probability of the predicted label."""
    scores: dict[str, float] = field(default_factory=dict)
    """Probability of every label."""
    latency_ms: float = 0.0
    """Time the request spent in the model (or end to end, as the server measures it)."""
    key_id: str | None = None
    """Public id of the API key that asked (never the key): only that key, or an admin, may label it."""
    output: str | None = None
    """A generated answer, in clear (stored as the text policy says); None for a classification.
    A generation's ``text`` is its prompt, its ``label`` the finish reason (``stop``, ``length``)."""
    prompt_tokens: int | None = None
    """A generation's prompt tokens."""
    completion_tokens: int | None = None
    """A generation's generated tokens (not None marks the record as a generation)."""


def token_counts(prompt: Any, generated: Any, ms: Any) -> dict[str, Any]:
    """A version's summed ``prompt_tokens`` and ``completion_tokens`` (None: no generations, a classifier)
    and ``tokens_per_s``: generated tokens over the milliseconds its answers took."""
    rate = round(float(generated) / (float(ms) / 1e3), 2) if generated and ms else None
    return {"prompt_tokens": None if prompt is None else int(prompt),
            "completion_tokens": None if generated is None else int(generated), "tokens_per_s": rate}
