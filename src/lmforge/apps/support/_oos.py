"""Out-of-scope scores and their calibration: NumPy only, no model.

Every score is "in-scope-ness": higher means more like the intents the classifier was trained
on, and a question is out of scope when its score falls below the threshold. The threshold is
the quantile of the in-scope validation scores that keeps ``target`` of them in scope, so the
target holds on validation by construction and, for a held-out split from the same
distribution, up to sampling error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lmforge.errors import DataError, NotFittedError
from lmforge.monitor import roc_auc
from lmforge.predict import softmax

__all__ = ["Mahalanobis", "calibrate", "choose_method", "oos_scores"]


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1, keepdims=True)
    out: np.ndarray = (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))[:, 0]
    return out


class Mahalanobis:
    """Class-conditional Gaussians with one shared covariance on pooled embeddings (Lee et al., 2018).

    ``score`` is minus the smallest squared Mahalanobis distance to a class mean. The covariance
    is shrunk toward its mean variance (``shrinkage``), so it stays invertible when there are
    fewer examples than dimensions.
    """

    def __init__(self, shrinkage: float = 0.05) -> None:
        self.shrinkage = shrinkage

    def fit(self, embeddings: np.ndarray, classes: np.ndarray) -> Mahalanobis:
        """Fit the class means and the shared precision matrix from (N, H) embeddings and (N,) class ids."""
        x = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(classes)
        labels = np.unique(y)
        if len(x) < 2 or len(labels) < 1:
            raise DataError("The Mahalanobis out-of-scope score needs at least two training embeddings.")
        means = np.stack([x[y == c].mean(axis=0) for c in labels])  # (C, H)
        centered = x - means[np.searchsorted(labels, y)]
        cov = centered.T @ centered / len(x)  # (H, H)
        mean_var = float(np.trace(cov)) / cov.shape[0] or 1.0
        cov = (1.0 - self.shrinkage) * cov + self.shrinkage * mean_var * np.eye(cov.shape[0])
        self.means_ = means.astype(np.float32)
        self.precision_ = np.linalg.inv(cov).astype(np.float32)
        return self

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) minus the squared distance to the nearest class mean (higher: more in scope)."""
        if not hasattr(self, "means_"):
            raise NotFittedError("Mahalanobis.score called before fit (or from_arrays).")
        x = np.asarray(embeddings, dtype=np.float32)
        diff = x[:, None, :] - self.means_[None, :, :]  # (N, C, H)
        dist = np.einsum("nch,hk,nck->nc", diff, self.precision_, diff)  # (N, C)
        out: np.ndarray = -dist.min(axis=1)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (saved as safetensors)."""
        return {"means": self.means_, "precision": self.precision_}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Mahalanobis:
        """A fitted detector from :meth:`to_arrays`' output."""
        out = cls()
        out.means_ = np.asarray(arrays["means"], dtype=np.float32)
        out.precision_ = np.asarray(arrays["precision"], dtype=np.float32)
        return out


def oos_scores(logits: np.ndarray, embeddings: np.ndarray | None = None,
               mahalanobis: Mahalanobis | None = None) -> dict[str, np.ndarray]:
    """Every score available: ``max-prob`` and ``energy`` from (N, C) logits, ``mahalanobis`` when
    the embeddings and a fitted detector are given."""
    logits = np.asarray(logits, dtype=np.float32)
    out = {"max-prob": softmax(logits).max(axis=1), "energy": _logsumexp(logits)}
    if embeddings is not None and mahalanobis is not None:
        out["mahalanobis"] = mahalanobis.score(embeddings)
    return out


def calibrate(in_scope: np.ndarray, target: float) -> float:
    """The highest threshold that keeps at least ``target`` of the ``in_scope`` scores (score >= threshold)."""
    scores = np.sort(np.asarray(in_scope, dtype=np.float64))
    if scores.size == 0:
        raise DataError("Calibrating the out-of-scope threshold needs in-scope validation questions; "
                        "the validation split is empty. Raise data.val_fraction.")
    drop = int(np.floor((1.0 - target) * scores.size + 1e-9))  # at most this many fall below
    return float(scores[min(drop, scores.size - 1)])


def choose_method(val_scores: Mapping[str, np.ndarray], oos: Mapping[str, np.ndarray] | None,
                  target: float) -> dict[str, Any]:
    """Calibrate every method and measure it; ``oos`` (the OOS file's scores) makes the numbers complete.

    Returns ``{"methods": {name: {threshold, val_in_scope_recall, oos_recall, auroc}}, "best": name}``:
    the best has the highest out-of-scope recall at its threshold, then the highest AUROC; without
    out-of-scope examples nothing can be compared and ``best`` is ``max-prob``.
    """
    methods: dict[str, dict[str, Any]] = {}
    for name, scores in val_scores.items():
        threshold = calibrate(scores, target)
        row: dict[str, Any] = {"threshold": threshold,
                               "val_in_scope_recall": float(np.mean(scores >= threshold)),
                               "oos_recall": None, "auroc": None}
        if oos is not None and len(oos[name]):
            row["oos_recall"] = float(np.mean(oos[name] < threshold))
            y = np.r_[np.zeros(len(scores)), np.ones(len(oos[name]))]
            row["auroc"] = roc_auc(y, -np.r_[scores, oos[name]])
        methods[name] = row
    best = "max-prob"
    if oos is not None:
        best = max(methods, key=lambda m: (methods[m]["oos_recall"] or 0.0, methods[m]["auroc"] or 0.0))
    return {"methods": methods, "best": best}
