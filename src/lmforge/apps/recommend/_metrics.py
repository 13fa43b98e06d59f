"""Full-ranking metrics: every candidate item is ranked, no sampled negatives.

A user's training items are never candidates (they are set to -inf before ranking), so a model
is not rewarded for recommending what the user already has. Ties go in a fixed pseudo-random
order of the items (:func:`tie_order`), never their index: items are indexed by first
appearance in the interactions, test ones included, so breaking ties by index would hand a
model with no signal (popularity or EASE on items nobody trained on) some of the test answers.

- HR@k: 1 when any held-out item is in the top k;
- Recall@k: held-out items in the top k / held-out items;
- NDCG@k: sum of ``1 / log2(rank + 1)`` over hits (rank from 1), divided by the same sum of
  an ideal ranking (``min(k, held-out items)`` hits at the top).

Each is averaged over the users with at least one held-out item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["METRIC_KS", "by_user", "evaluate_scores", "ranking_metrics", "tie_order", "top_k"]

METRIC_KS = (10, 20)
"""The cut-offs every model is measured at."""


def by_user(users: np.ndarray, items: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Item indices of each user (index = user), in the given order."""
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(n_users + 1))
    sorted_items = items[order]
    return [sorted_items[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def tie_order(n_items: int) -> np.ndarray:
    """The rank of each item among equal scores: a permutation fixed by ``n_items`` (seed 0)."""
    return np.random.default_rng(0).permutation(n_items)


def top_k(scores: np.ndarray, exclude: Sequence[np.ndarray], k: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` best item indices per row of ``scores`` (B, I), best first, ties by :func:`tie_order`.

    ``exclude[b]`` lists the items row ``b`` may not get; with ``candidates`` only those items
    may be ranked. Rows are changed in place (excluded items become -inf).
    """
    if candidates is not None:
        allowed = np.zeros(scores.shape[1], dtype=bool)
        allowed[candidates] = True
        scores[:, ~allowed] = -np.inf
    for b, items in enumerate(exclude):
        scores[b, items] = -np.inf
    k = min(k, scores.shape[1])
    ties = np.broadcast_to(tie_order(scores.shape[1]), scores.shape)
    return np.lexsort((ties, -scores), axis=1)[:, :k]


def ranking_metrics(top: np.ndarray, relevant: Sequence[np.ndarray], ks: Sequence[int] = METRIC_KS) -> dict[str, float]:
    """Mean NDCG@k, HR@k and Recall@k of rankings ``top`` (U, K) against ``relevant`` items per row."""
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    sums = {f"{name}@{k}": 0.0 for k in ks for name in ("NDCG", "HR", "Recall")}
    n = 0
    for row, rel in zip(top, relevant, strict=True):
        if len(rel) == 0:
            continue
        n += 1
        hits = np.isin(row, rel)
        for k in ks:
            h = hits[:k]
            sums[f"HR@{k}"] += float(h.any())
            sums[f"Recall@{k}"] += float(h.sum()) / len(rel)
            ideal = discounts[: min(k, len(rel))].sum()
            sums[f"NDCG@{k}"] += float(discounts[:k][h].sum()) / ideal
    out = {key: (value / n if n else 0.0) for key, value in sums.items()}
    out["users"] = n
    return out


def evaluate_scores(score: Callable[[np.ndarray], np.ndarray], train: Sequence[np.ndarray],
                    held: Sequence[np.ndarray], *, candidates: np.ndarray | None = None,
                    ks: Sequence[int] = METRIC_KS, batch: int = 256) -> dict[str, float]:
    """Rank for every user with held-out items (``score(user indices) -> (B, I)``) and measure it.

    ``train[u]`` are excluded from user ``u``'s ranking, ``held[u]`` are the relevant items.
    """
    users = np.array([u for u, h in enumerate(held) if len(h)], dtype=np.int64)
    tops: list[np.ndarray] = []
    rels: list[np.ndarray] = []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        scores = np.array(score(chunk), dtype=np.float64)
        tops.append(top_k(scores, [train[u] for u in chunk], max(ks), candidates))
        rels.extend(held[u] for u in chunk)
    if not tops:
        return ranking_metrics(np.zeros((0, max(ks)), dtype=np.int64), [], ks)
    return ranking_metrics(np.concatenate(tops), rels, ks)
