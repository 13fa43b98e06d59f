"""Evaluation protocols: which positives train, which validate, which test. Seeded.

One rule holds the test set out of everything, and the same rule then carves validation out
of what is left, so the blend weights are fitted on a split made like the test split:

- ``ratio``: a random share of each user's positives (at least one, never all of them);
- ``loo``: each user's last positive by time (positives are stored oldest first);
- ``cold``: a random share of the items, with every interaction they have; they are ranked
  among themselves at evaluation (no training item is a candidate), and a held-out interaction
  of a user with nothing left in training is dropped (that user is unknown);
- ``none``: nothing is tested; validation is carved by ``ratio`` to fit the blend weights.

Users with fewer than ``recommend.min_positives`` positives are never held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmforge.apps.recommend._data import Interactions
from lmforge.config import RecommendConfig

__all__ = ["Holdout", "Splits", "hold_out", "make_splits"]


@dataclass
class Holdout:
    """Rows (indices into the positives) kept for training and held out, and the items ranked."""

    keep: np.ndarray
    held: np.ndarray
    candidates: np.ndarray | None
    """Item indices ranked when evaluating the held rows; None: every item."""
    dropped: int = 0
    """Held-out rows dropped because their user has nothing left to train on (``cold``)."""


def _per_user_rank(users: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: its rank by ``key`` within its user (0 first), and its user's row count."""
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    return rank, np.repeat(counts, counts)[np.argsort(order)]


def hold_out(kind: str, users: np.ndarray, items: np.ndarray, rows: np.ndarray, fraction: float,
             eligible: np.ndarray, rng: np.random.Generator) -> Holdout:
    """Split ``rows`` (ascending, time order within a user) by protocol ``kind``.

    ``eligible[u]`` says whether user ``u`` may have rows held out.
    """
    u, it = users[rows], items[rows]
    if kind == "cold":
        pool = np.unique(it)
        chosen = rng.choice(pool, size=max(1, round(fraction * len(pool))), replace=False) if len(pool) > 1 else pool[:0]
        is_held = np.isin(it, chosen)
        known = np.zeros(len(eligible), dtype=bool)
        known[u[~is_held]] = True
        valid = is_held & known[u]
        return Holdout(keep=rows[~is_held], held=rows[valid], candidates=np.sort(chosen),
                       dropped=int(is_held.sum() - valid.sum()))
    if kind == "loo":
        rank, count = _per_user_rank(u, np.arange(len(u)))
        is_held = (rank == count - 1) & (count >= 2)
    else:  # ratio
        rank, count = _per_user_rank(u, rng.permutation(len(u)))
        n_hold = np.minimum(np.maximum(1, np.rint(fraction * count)), count - 1)
        is_held = rank < n_hold
    is_held &= eligible[u]
    return Holdout(keep=rows[~is_held], held=rows[is_held], candidates=None)


@dataclass
class Splits:
    """Row indices of the positives: ``fit`` (models learn) + ``val`` = ``train``; ``test``."""

    train: np.ndarray
    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_candidates: np.ndarray | None
    test_candidates: np.ndarray | None
    report: dict[str, int]


def make_splits(data: Interactions, cfg: RecommendConfig) -> Splits:
    """The protocol ``cfg.split``, seeded by ``cfg.seed``, and its validation carve-out."""
    rng = np.random.default_rng(cfg.seed)
    counts = np.bincount(data.users, minlength=data.n_users)
    eligible = counts >= cfg.min_positives
    rows = np.arange(len(data.users))
    if cfg.split == "none":
        test = Holdout(keep=rows, held=rows[:0], candidates=None)
    else:
        test = hold_out(cfg.split, data.users, data.items, rows, cfg.test_fraction, eligible, rng)
    val_kind = "ratio" if cfg.split == "none" else cfg.split
    val = hold_out(val_kind, data.users, data.items, test.keep, cfg.val_fraction, eligible, rng)
    report = {"train": len(test.keep), "fit": len(val.keep), "val": len(val.held), "test": len(test.held),
              "test_dropped_unknown_user": test.dropped, "val_dropped_unknown_user": val.dropped,
              "test_users": len(np.unique(data.users[test.held])), "val_users": len(np.unique(data.users[val.held]))}
    return Splits(train=test.keep, fit=val.keep, val=val.held, test=test.held,
                  val_candidates=val.candidates, test_candidates=test.candidates, report=report)
