"""The domain classifier of the embedding detector: L2 logistic regression by Newton's method, in torch.

Torch, not NumPy: the detector needs torch for the embeddings anyway, and NumPy's threaded
BLAS on these small (hundreds x 385) matrices, next to torch's own thread pool on a busy
machine, ran 30x slower than one thread (2 s against 0.06 s per check, measured here).
Torch keeps to the thread count the process set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmforge._extras import require

__all__ = ["cross_val_scores", "fit_logistic"]


def _torch() -> Any:
    return require("torch", extra="train", purpose="Embedding drift detection")


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, max_iter: int = 25) -> np.ndarray:
    """L2-regularized logistic regression; returns the weights with the bias last.

    Minimizes the summed log-loss plus ``0.5 * l2 * ||w||^2`` (the bias is not penalized):
    scikit-learn's ``LogisticRegression(C=1 / l2)``.
    """
    torch = _torch()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64))
    return _newton(torch, xt, yt, l2, max_iter).numpy()


def _newton(torch: Any, x: Any, y: Any, l2: float, max_iter: int) -> Any:
    n, dim = x.shape
    xb = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)  # (N, D+1)
    w = torch.zeros(dim + 1, dtype=x.dtype)
    penalty = torch.full((dim + 1,), float(l2), dtype=x.dtype)
    penalty[-1] = 0.0
    ridge = torch.diag(penalty + 1e-8)
    for _ in range(max_iter):
        p = torch.sigmoid(xb @ w)  # (N,)
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p)).unsqueeze(1)).T @ xb + ridge  # (D+1, D+1)
        step = torch.linalg.solve(hess, grad)
        w = w - step
        if float(step.abs().max()) < 1e-6:
            break
    return w


def cross_val_scores(
    x: np.ndarray, y: np.ndarray, folds: int = 5, l2: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Out-of-fold scores (stratified folds): each row scored by a model that never saw it."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    fold_of = np.empty(y.size, dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(idx.size) % folds
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64))
    scores = np.empty(y.size, dtype=np.float64)
    for k in range(folds):
        test = torch.as_tensor(fold_of == k)
        w = _newton(torch, xt[~test], yt[~test], l2, 25)
        scores[fold_of == k] = (xt[test] @ w[:-1] + w[-1]).numpy()
    return scores
