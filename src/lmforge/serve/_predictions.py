"""What answered a predict (or generate) request, and what becomes of its answer: response rows and monitoring
records."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmforge.monitor import PredictionRecord
from lmforge.serve._slots import Loaded

__all__ = ["PredictOutcome", "prompt_text", "record", "record_generation", "to_predictions"]

log = logging.getLogger("lmforge.serve")


@dataclass
class PredictOutcome:
    """What answered a predict request."""

    loaded: Loaded
    proba: np.ndarray
    latency_ms: float


def to_predictions(loaded: Loaded, proba: np.ndarray) -> list[dict[str, Any]]:
    """One response row per text: a fresh prediction id, the best label and every label's score."""
    labels = loaded.labels
    out = []
    for row in proba:
        best = int(row.argmax())
        out.append(
            {
                "prediction_id": uuid.uuid4().hex,
                "label": labels[best],
                "score": float(row[best]),
                "scores": {label: float(p) for label, p in zip(labels, row, strict=True)},
                "model": loaded.model,
                "version": loaded.version,
            }
        )
    return out


def record(
    monitor: Any, outcome: PredictOutcome, texts: list[str], predictions: list[dict[str, Any]],
    key_id: str | None = None,
) -> None:
    """Hand the answered predictions to monitoring (non-blocking); never fails the request."""
    if monitor is None:
        return
    try:
        ts = time.time()
        per_text = outcome.latency_ms
        records = [
            PredictionRecord(
                id=p["prediction_id"],
                ts=ts,
                model=outcome.loaded.model,
                version=str(outcome.loaded.version),
                text=text,
                label=p["label"],
                confidence=p["score"],
                scores=p["scores"],
                latency_ms=per_text,
                key_id=key_id,
            )
            for text, p in zip(texts, predictions, strict=True)
        ]
        monitor.record_many(records)
    except Exception as exc:  # monitoring must never break serving; the text is not logged
        log.warning("monitoring could not record %d predictions: %s", len(texts), type(exc).__name__)


def prompt_text(prompt: Any) -> str:
    """A prompt as one text for the store: the text itself, or ``role: content`` per chat turn."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{turn['role']}: {turn['content']}" for turn in prompt)


def record_generation(monitor: Any, running: Any, prompt: Any, answer: str, finish: str, key_id: str | None,
                      prediction_id: str, started: float) -> None:
    """Hand one finished generation to monitoring (non-blocking; the store masks PII in prompt and answer)."""
    if monitor is None:
        return
    try:
        monitor.record_many([PredictionRecord(
            id=prediction_id, ts=time.time(), model=running.loaded.model, version=str(running.loaded.version),
            text=prompt_text(prompt), label=finish, confidence=1.0, scores={},
            latency_ms=(time.monotonic() - started) * 1e3, key_id=key_id, output=answer,
            prompt_tokens=running.prompt_tokens, completion_tokens=running.completion_tokens,
        )])
    except Exception as exc:  # monitoring must never break serving; no text is logged
        log.warning("monitoring could not record a generation: %s", type(exc).__name__)
