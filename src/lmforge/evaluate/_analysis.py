"""Error analysis: where the model is wrong, and on what kind of text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmforge.errors import DataError

__all__ = ["collect_errors", "error_rate_by_length", "weak_classes"]

# A class is weak when its F1 is below this, or this far below the macro-F1.
WEAK_F1 = 0.5
WEAK_GAP = 0.1


def error_rate_by_length(
    texts: Sequence[str], correct: Sequence[bool] | np.ndarray, groups: int = 4
) -> list[dict]:
    """Error rate of the test texts split into length quantiles (characters).

    Texts are ranked by length and cut into ``groups`` groups of (nearly) equal size, so ties
    in length cannot leave a group empty the way quantile edges can.

    Args:
        texts: The test texts.
        correct: Whether each prediction was right, same order as ``texts``.
        groups: Number of groups (4 = quartiles).

    Returns:
        Per group, shortest first: ``{"group", "min_chars", "max_chars", "count", "errors",
        "error_rate"}``; fewer than ``groups`` entries when there are fewer texts.
    """
    ok = np.asarray(correct, dtype=bool)
    if len(texts) != ok.size:
        raise DataError(f"{len(texts)} texts but {ok.size} correctness flags; they must match.")
    if groups < 1:
        raise DataError(f"groups must be at least 1, got {groups}.")
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    out: list[dict[str, Any]] = []
    for chunk in np.array_split(order, min(groups, max(len(texts), 1))):
        if chunk.size == 0:
            continue
        errors = int((~ok[chunk]).sum())
        out.append(
            {
                "group": len(out) + 1,
                "min_chars": int(lengths[chunk].min()),
                "max_chars": int(lengths[chunk].max()),
                "count": int(chunk.size),
                "errors": errors,
                "error_rate": errors / int(chunk.size),
            }
        )
    return out


def collect_errors(
    texts: Sequence[str], y_true: np.ndarray, proba: np.ndarray, labels: list[str], limit: int
) -> list[dict[str, Any]]:
    """Misclassified examples, most confident first (ties in test-set order), at most ``limit``.

    Args:
        texts: The test texts.
        y_true: True class indices, shape (N,).
        proba: Predicted probabilities, shape (N, C).
        labels: Class names in column order.
        limit: Maximum number of errors returned.

    Returns:
        ``[{"text", "label", "predicted", "confidence", "scores": {label: p}}]``.
    """
    pred = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    # Stable sort on -confidence keeps test-set order among equal confidences.
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][: max(limit, 0)]
    return [
        {
            "text": texts[int(i)],
            "label": labels[int(y_true[i])],
            "predicted": labels[int(pred[i])],
            "confidence": round(float(confidence[i]), 6),
            "scores": {label: round(float(proba[i, j]), 6) for j, label in enumerate(labels)},
        }
        for i in wrong
    ]


def weak_classes(metrics: dict[str, Any]) -> list[str]:
    """Labels with test examples whose F1 is below 0.5 or 0.1 below the macro-F1, weakest first."""
    per_class = metrics["per_class"]
    threshold = max(WEAK_F1, metrics["macro_f1"] - WEAK_GAP)
    weak = [name for name, row in per_class.items() if row["support"] > 0 and row["f1"] < threshold]
    return sorted(weak, key=lambda name: (per_class[name]["f1"], name))
