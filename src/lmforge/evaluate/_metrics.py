"""Classification metrics and calibration in pure NumPy.

Every metric derives from one confusion matrix, so a class absent from the test split gets
precision, recall and F1 of 0 with support 0 (no NaN, no warning) and still counts in the
macro average: a model that never sees a class should not look better for it. The
definitions match scikit-learn's ``zero_division=0`` behaviour (tested for parity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmforge.errors import DataError
from lmforge.metrics import class_indices, confusion_matrix, macro_f1, per_class_scores, safe_divide

__all__ = ["compute_metrics", "macro_f1", "most_confused"]

# Rows of ``proba`` may sum to 1 only up to this much (low-precision softmax); beyond it the
# predictor did not return probabilities.
_ROW_SUM_TOLERANCE = 1e-2


def _check_proba(proba: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(proba, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (n, n_classes):
        raise DataError(
            f"proba must have shape (n_examples, n_classes) = ({n}, {n_classes}), got {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise DataError("proba holds NaN or infinite values; the predictor did not return probabilities.")
    if (arr < 0).any():
        raise DataError(f"proba holds negative values (min {arr.min():.3g}); expected probabilities.")
    sums = arr.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _ROW_SUM_TOLERANCE:
        raise DataError(
            f"Row {worst} of proba sums to {sums[worst]:.4f}, not 1; pass softmax probabilities, not logits."
        )
    return arr / sums[:, None]  # exact normalization of low-precision softmax output


def _calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[float, list[dict]]:
    """Expected calibration error over equal-width confidence bins (Guo et al., 2017).

    Bin ``b`` holds confidences in ``(b/n, (b+1)/n]``; the first bin also holds 0.
    ECE = sum over bins of (count / N) * |accuracy - mean confidence|.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(index, minlength=n_bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc = safe_divide(hits, counts)
    conf = safe_divide(conf_sum, counts)
    ece = float(np.sum(counts / confidence.size * np.abs(acc - conf)))
    bins = [
        {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(counts[b]),
            # Empty bins have no accuracy or confidence; null rather than a made-up 0.
            "accuracy": float(acc[b]) if counts[b] else None,
            "confidence": float(conf[b]) if counts[b] else None,
        }
        for b in range(n_bins)
    ]
    return ece, bins


def most_confused(
    confusion: Sequence[Sequence[int]] | np.ndarray, labels: list[str], k: int = 5
) -> list[dict]:
    """The ``k`` largest off-diagonal cells of a confusion matrix.

    Args:
        confusion: (C, C) counts, rows = true class.
        labels: Class names in matrix order.
        k: How many pairs to return at most.

    Returns:
        ``[{"true", "predicted", "count"}]`` with count > 0, largest first (ties in matrix order).
    """
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape != (len(labels), len(labels)):
        raise DataError(
            f"confusion must be ({len(labels)}, {len(labels)}) for {len(labels)} labels, got {cm.shape}."
        )
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    order = np.argsort(-flat, kind="stable")[:k]
    c = len(labels)
    return [
        {"true": labels[i // c], "predicted": labels[i % c], "count": int(flat[i])}
        for i in order
        if flat[i] > 0
    ]


def compute_metrics(
    y_true: Sequence[int] | np.ndarray, proba: np.ndarray, labels: list[str], n_bins: int = 15
) -> dict[str, Any]:
    """Accuracy, F1, per-class scores, confusion matrix, calibration and log loss.

    Predictions are the argmax of ``proba``; confidence is its row maximum.

    Args:
        y_true: True class indices into ``labels``, shape (N,).
        proba: Predicted probabilities, shape (N, C), columns in ``labels`` order.
        labels: Class names, C of them.
        n_bins: Equal-width confidence bins of the expected calibration error.

    Returns:
        A JSON-ready dict: ``accuracy``, ``macro_f1``, ``weighted_f1``, ``per_class``
        (``{label: {precision, recall, f1, support}}``), ``confusion_matrix`` (rows = true),
        ``ece``, ``calibration`` (per bin ``{lower, upper, count, accuracy, confidence}``),
        ``log_loss``, ``most_confused`` and ``n_test``.

    Raises:
        DataError: On empty input, mismatched shapes, out-of-range indices or rows of
            ``proba`` that are not probabilities.
    """
    n_classes = len(labels)
    if n_classes < 2:
        raise DataError(f"Metrics need at least 2 labels, got {labels!r}.")
    if len(set(labels)) != n_classes:
        raise DataError(f"labels must be unique, got {labels!r}.")
    if n_bins < 1:
        raise DataError(f"n_bins must be at least 1, got {n_bins}.")
    t = class_indices(y_true, n_classes, "y_true")
    if t.size == 0:
        raise DataError("Cannot compute metrics of zero examples: the test split is empty.")
    p = _check_proba(proba, t.size, n_classes)  # (N, C)

    pred = p.argmax(axis=1)
    confidence = p.max(axis=1)
    correct = pred == t
    cm = confusion_matrix(t, pred, n_classes)
    precision, recall, f1, support = per_class_scores(cm)
    total = support.sum()

    # Clip like scikit-learn so a confident mistake costs a large but finite loss.
    eps = np.finfo(np.float64).eps
    p_true = np.clip(p[np.arange(t.size), t], eps, 1 - eps)
    ece, bins = _calibration(confidence, correct, n_bins)

    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float(np.sum(f1 * support) / total),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "ece": ece,
        "calibration": bins,
        "log_loss": float(-np.mean(np.log(p_true))),
        "most_confused": most_confused(cm, labels),
        "n_test": int(t.size),
    }
