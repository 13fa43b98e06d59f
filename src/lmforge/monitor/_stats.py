"""The statistics the drift detectors need, in NumPy and the standard library.

scikit-learn and SciPy are not dependencies of lmforge: the two-sample Kolmogorov-Smirnov
test (asymptotic), the chi-square survival function, PSI, ROC AUC and an L2 logistic
regression fit by Newton's method are short enough to own. The tests check them against
SciPy and scikit-learn where those are installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "auc_null_sd",
    "chi2_contingency",
    "chi2_sf",
    "kolmogorov_sf",
    "ks_2samp",
    "normal_sf",
    "psi",
    "roc_auc",
]


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution (limit of sqrt(n) * D_n)."""
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        # Jacobi-theta form: converges fast for small x, where the alternating series does not.
        s = sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x)) for k in range(1, 8))
        return max(0.0, min(1.0, 1.0 - math.sqrt(2.0 * math.pi) / x * s))
    s = sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 101))
    return max(0.0, min(1.0, 2.0 * s))


def ks_2samp(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Two-sample, two-sided Kolmogorov-Smirnov test with the asymptotic p-value.

    Returns:
        ``(D, p)``: the largest gap between the two empirical CDFs and its p-value
        (SciPy's ``ks_2samp(a, b, method="asymp")``; conservative when values tie).
    """
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    n, m = x.size, y.size
    if n == 0 or m == 0:
        raise ValueError("ks_2samp needs two non-empty samples.")
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / n
    cdf_y = np.searchsorted(y, grid, side="right") / m
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    en = n * m / (n + m)
    return d, kolmogorov_sf(math.sqrt(en) * d)


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    ap = a
    for _ in range(1000):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    # Modified Lentz evaluation of the continued fraction of Q(a, x) (Numerical Recipes 6.2).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-square variable with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"chi-square needs at least 1 degree of freedom, got {dof}.")
    if x <= 0.0:
        return 1.0
    a, half = dof / 2.0, x / 2.0
    if half < a + 1.0:
        return max(0.0, min(1.0, 1.0 - _gamma_p_series(a, half)))
    return max(0.0, min(1.0, _gamma_q_fraction(a, half)))


def chi2_contingency(table: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-square test of homogeneity of the rows of a count table.

    Columns that are empty in every row are dropped first.

    Returns:
        ``(statistic, p_value, dof)``; ``p_value`` is 1.0 when fewer than two columns remain.
    """
    t = np.asarray(table, dtype=np.float64)
    t = t[:, t.sum(axis=0) > 0]
    if t.shape[1] < 2 or t.shape[0] < 2:
        return 0.0, 1.0, 0
    expected = t.sum(axis=1, keepdims=True) * t.sum(axis=0, keepdims=True) / t.sum()
    stat = float(((t - expected) ** 2 / expected).sum())
    dof = (t.shape[0] - 1) * (t.shape[1] - 1)
    return stat, chi2_sf(stat, dof), dof


def psi(reference: np.ndarray, current: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index between two distributions over the same bins.

    ``sum((c - r) * ln(c / r))`` over bins, with shares floored at ``eps`` so an empty bin
    does not make it infinite. Common reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 shifted.
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    r = np.clip(r / max(r.sum(), 1e-12), eps, None)
    c = np.clip(c / max(c.sum(), 1e-12), eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``y`` (Mann-Whitney U / n1 n0; ties count half)."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both classes.")
    ranks = _ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auc_null_sd(n1: int, n0: int) -> float:
    """Standard deviation of the AUC of an uninformative score (Mann-Whitney, no ties)."""
    return math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
