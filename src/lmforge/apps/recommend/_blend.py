"""The blend: a weighted sum of per-user standardized scores (text, EASE, popularity).

Each part's scores are standardized per user over the items being ranked (mean 0, standard
deviation 1), so a weight means the same whatever scale a model scores on. The weights are
the point of a grid on the simplex (steps of ``1 / steps``) with the best validation NDCG@10;
nothing else is fitted, and nothing of the test split is seen (:func:`fit_weights` gets the
validation positives only). Ties go to the earlier grid point, which puts more weight on the
first part: with the text part first, a text model that adds nothing gets no weight only if it
loses on validation.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from lmforge.apps.recommend._metrics import ranking_metrics, top_k

__all__ = ["Blend", "Scorer", "fit_weights", "simplex_grid", "standardize"]


class Scorer(Protocol):
    def score(self, users: np.ndarray) -> np.ndarray:
        """(B, I) scores of the users ``users`` for every item."""
        ...


def standardize(scores: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (over ``candidates`` when given)."""
    cols = scores if candidates is None else scores[:, candidates]
    mean = cols.mean(axis=1, keepdims=True)
    std = cols.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std == 0, 1.0, std)


def simplex_grid(parts: int, steps: int) -> list[tuple[float, ...]]:
    """Every weight vector of ``parts`` non-negative multiples of ``1 / steps`` summing to 1."""
    return [tuple(c / steps for c in combo)
            for combo in itertools.product(range(steps, -1, -1), repeat=parts) if sum(combo) == steps]


class Blend:
    """``sum_p weights[p] * standardize(parts[p].score(users))``."""

    def __init__(self, parts: Mapping[str, Scorer], weights: Mapping[str, float],
                 candidates: np.ndarray | None = None) -> None:
        self.parts = dict(parts)
        self.weights = dict(weights)
        self.candidates = candidates

    def score(self, users: np.ndarray) -> np.ndarray:
        total: np.ndarray | None = None
        for name, part in self.parts.items():
            w = self.weights.get(name, 0.0)
            if w == 0.0:
                continue
            z = w * standardize(np.asarray(part.score(users), dtype=np.float64), self.candidates)
            total = z if total is None else total + z
        if total is None:
            raise ValueError("a blend needs a positive weight")
        return total


def fit_weights(parts: Mapping[str, Scorer], train: Sequence[np.ndarray], val: Sequence[np.ndarray], *,
                candidates: np.ndarray | None = None, steps: int = 10, metric: str = "NDCG@10",
                ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The grid weights with the best validation ``metric``, and every grid point's score.

    ``train[u]`` (excluded from user ``u``'s ranking) and ``val[u]`` (relevant) are the fit and
    validation positives of each user.
    """
    users = np.array([u for u, v in enumerate(val) if len(v)], dtype=np.int64)
    names = list(parts)
    if len(users) == 0:  # nothing to fit on: the collaborative model alone, as without a blend
        fallback = "ease" if "ease" in names else names[-1]
        return {n: float(n == fallback) for n in names}, []
    z = {n: standardize(np.asarray(parts[n].score(users), dtype=np.float64), candidates) for n in names}
    k = int(metric.split("@")[1])
    exclude = [train[u] for u in users]
    relevant = [val[u] for u in users]
    results: list[dict[str, Any]] = []
    best_value, best_weights = -1.0, dict.fromkeys(names, 0.0)
    for combo in simplex_grid(len(names), steps):
        scores = sum((w * z[n] for n, w in zip(names, combo, strict=True) if w), np.zeros(z[names[0]].shape))
        top = top_k(np.asarray(scores), exclude, k, candidates)
        value = ranking_metrics(top, relevant, (k,))[metric]
        weights = dict(zip(names, combo, strict=True))
        results.append({"weights": weights, metric: value})
        if value > best_value:
            best_value, best_weights = value, weights
    return best_weights, results
