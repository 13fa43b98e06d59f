"""Seeded stratified sampling and splitting, in NumPy (scikit-learn is only a dev dependency)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmforge.errors import DataError

__all__ = ["allocate", "stratified_sample", "stratified_split"]


def allocate(counts: np.ndarray, total: int, caps: np.ndarray) -> np.ndarray:
    """Share ``total`` items among classes in proportion to ``counts``, never above ``caps``.

    Largest-remainder rounding (Hamilton's method), so the shares add up to ``total``
    exactly (or to ``caps.sum()`` when that is smaller); ties go to the earlier class.
    """
    counts = np.asarray(counts, dtype=float)
    caps = np.asarray(caps, dtype=np.int64)
    total = int(min(total, caps.sum()))
    if total <= 0 or counts.sum() == 0:
        return np.zeros(len(counts), dtype=np.int64)
    ideal = counts / counts.sum() * total
    share = np.minimum(np.floor(ideal).astype(np.int64), caps)
    remaining = total - int(share.sum())
    while remaining > 0:
        room = caps - share
        priority = np.where(room > 0, ideal - share, -np.inf)
        take = np.argsort(-priority, kind="stable")[: min(remaining, int(np.count_nonzero(room > 0)))]
        share[take] += 1
        remaining -= len(take)
    return share


def _classes(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    classes, inverse = np.unique(np.asarray(list(labels), dtype=str), return_inverse=True)
    return classes, inverse, np.bincount(inverse, minlength=len(classes))


def stratified_sample(labels: Sequence[str], n: int, *, seed: int, min_per_class: int = 1) -> np.ndarray:
    """Indices of a seeded sample of ``n`` rows with the class proportions of ``labels``.

    Each class keeps at least ``min(min_per_class, its count)`` rows, so a rare class survives.

    Returns:
        Sorted row indices (original order kept).

    Raises:
        DataError: ``n`` is too small to keep ``min_per_class`` rows of every class.
    """
    classes, inverse, counts = _classes(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    floor = np.minimum(counts, min_per_class)
    if n < floor.sum():
        raise DataError(
            f"data.max_examples={n} is too small for {len(classes)} labels with at least "
            f"{min_per_class} examples each (data.min_per_class); raise it to at least {int(floor.sum())}."
        )
    # Classes whose proportional share falls below their floor get the floor; the others
    # share the rest in proportion (repeated, since fixing one class shrinks the rest).
    fixed = np.zeros(len(classes), dtype=bool)
    while True:
        free = ~fixed
        ideal = counts * (n - floor[fixed].sum()) / counts[free].sum()
        newly = free & (ideal < floor)
        if not newly.any():
            break
        fixed |= newly
    rest = allocate(np.where(free, counts, 0), n - int(floor[fixed].sum()), np.where(free, counts, 0))
    share = np.where(fixed, floor, rest)
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(share)]
    return np.sort(np.concatenate(picked))


def stratified_split(
    labels: Sequence[str], *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified train/val/test split of row indices.

    The held-out sizes are ``round(n * fraction)``, shared among classes by largest
    remainder, and every class keeps at least one training row. Each split comes back
    shuffled (seeded), so no split is ordered by label.

    Returns:
        ``(train, val, test)`` arrays of row indices.
    """
    _, inverse, counts = _classes(labels)
    n = len(labels)
    n_test = int(np.floor(n * test_fraction + 0.5))
    n_val = int(np.floor(n * val_fraction + 0.5))
    test_share = allocate(counts, n_test, counts - 1)
    val_share = allocate(counts, n_val, counts - 1 - test_share)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in range(len(counts)):
        rows = rng.permutation(np.flatnonzero(inverse == c))
        t, v = int(test_share[c]), int(val_share[c])
        test.append(rows[:t])
        val.append(rows[t : t + v])
        train.append(rows[t + v :])
    return tuple(rng.permutation(np.concatenate(part)).astype(np.int64) for part in (train, val, test))  # type: ignore[return-value]
