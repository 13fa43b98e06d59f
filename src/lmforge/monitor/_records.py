"""What the serving layer hands to the monitor for every prediction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

__all__ = ["PredictionRecord", "new_prediction_id"]


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
