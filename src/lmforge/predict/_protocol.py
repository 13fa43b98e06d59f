"""What a loaded model offers the stages above it, and the helpers every backend shares.

:class:`Predictor` is the interface of a text classifier, whatever runs it (PyTorch or ONNX
Runtime). A causal-LM ``Generator`` Protocol belongs beside it, in this module, with its own
backends registered in :mod:`lmforge.predict._dispatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Predictor", "batched_proba", "softmax", "to_predictions"]


@runtime_checkable
class Predictor(Protocol):
    """A text classifier ready to predict: what ``lmforge predict``, evaluation and serving use."""

    labels: list[str]
    """Class names, in the column order of :meth:`predict_proba`."""
    max_length: int
    """Longest token sequence the model sees; longer texts are truncated."""

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C); rows sum to 1, columns in ``labels`` order."""
        ...

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, in float32."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def batched_proba(texts: Sequence[str], n_labels: int, batch_size: int, progress: bool,
                  run_batch: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Apply ``run_batch`` (texts -> (B, C) probabilities) over length-sorted batches; input order out.

    Sorting by length keeps each batch's padding small; results go back to input order.
    """
    texts = list(texts)
    out = np.zeros((len(texts), n_labels), dtype=np.float32)
    if not texts:
        return out
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    starts: Any = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", unit="batch", dynamic_ncols=True)
    for start in starts:
        idx = order[start : start + batch_size]
        out[idx] = run_batch([texts[i] for i in idx])
    return out


def to_predictions(labels: list[str], proba: np.ndarray) -> list[dict[str, Any]]:
    """``predict`` output from a (N, C) probability matrix."""
    return [
        {
            "label": labels[int(row.argmax())],
            "score": float(row.max()),
            "scores": {label: float(p) for label, p in zip(labels, row, strict=True)},
        }
        for row in proba
    ]
