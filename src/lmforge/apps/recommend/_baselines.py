"""The baselines every recommender run measures: popularity, ItemKNN (cosine), EASE, TF-IDF content.

Each follows scikit-learn's contract: ``fit(X) -> self`` on the binary user x item matrix of
the training positives (``X[u, i] = 1``), fitted state ending in ``_``, and
``score(users) -> (B, I)`` for a batch of user indices. Dense NumPy: the item x item matrices
of ItemKNN and EASE are A^2 floats over the A items with training positives (9,724 rated
MovieLens items: 378 MB in float32; EASE's float64 inverse needs about three times that while it fits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from lmforge._extras import require
from lmforge.errors import NotFittedError

__all__ = ["EASE", "ItemKNN", "Popularity", "TfidfContent", "interaction_matrix"]

_WORD = re.compile(r"\w+")


def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """The binary (n_users, n_items) float32 matrix with a 1 at each (user, item) pair."""
    x = np.zeros((n_users, n_items), dtype=np.float32)
    x[users, items] = 1.0
    return x


class _Fitted:
    x_: np.ndarray

    def _check(self) -> None:
        if not hasattr(self, "x_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X) first.")


class Popularity(_Fitted):
    """Every user gets the items with the most training positives."""

    def fit(self, x: np.ndarray) -> Popularity:
        self.x_ = x
        self.counts_ = x.sum(axis=0)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check()
        return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()


class _ItemItem(_Fitted):
    """An item x item model over the items with training positives (``active_``); the others
    score 0 (no interactions: nothing to say), and the matrix is active^2, not I^2."""

    w_: np.ndarray

    def fit(self, x: np.ndarray) -> _ItemItem:
        self.x_ = x
        self.active_ = np.flatnonzero(x.sum(axis=0) > 0)
        self.w_ = self._weights(x[:, self.active_]).astype(np.float32)
        return self

    def _weights(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check()
        out = np.zeros((len(users), self.x_.shape[1]), dtype=np.float32)
        out[:, self.active_] = self.x_[users][:, self.active_] @ self.w_
        return out


class ItemKNN(_ItemItem):
    """Item-item cosine similarity of the interaction columns (self-similarity zeroed); a user's
    score for an item is the sum of its similarities to the user's items (Sarwar et al., 2001)."""

    def _weights(self, x: np.ndarray) -> np.ndarray:
        norms = np.sqrt(x.sum(axis=0))
        sim = (x.T @ x) / norms[:, None] / norms[None, :]  # (A, A)
        np.fill_diagonal(sim, 0.0)
        return sim


class EASE(_ItemItem):
    """Embarrassingly Shallow Autoencoder (Steck, 2019): ``B = argmin ||X - XB||^2 + lam ||B||^2``
    with ``diag(B) = 0``, in closed form ``P = (X^T X + lam I)^-1``, ``B = -P / diag(P)``."""

    def __init__(self, lam: float = 250.0) -> None:
        self.lam = lam

    def _weights(self, x: np.ndarray) -> np.ndarray:
        gram = (x.T @ x).astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        p = np.linalg.inv(gram)
        del gram
        p /= -np.diag(p)[None, :]
        np.fill_diagonal(p, 0.0)
        return p

    @property
    def b_(self) -> np.ndarray:
        """The full (I, I) weight matrix (zero rows and columns for items without positives)."""
        self._check()
        full = np.zeros((self.x_.shape[1],) * 2, dtype=np.float32)
        full[np.ix_(self.active_, self.active_)] = self.w_
        return full


class TfidfContent(_Fitted):
    """Content similarity only: a user is the sum of the TF-IDF vectors (lowercased words, smoothed
    IDF, L2-normalized) of their training items; an item's score is its cosine with that profile."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts

    def fit(self, x: np.ndarray) -> TfidfContent:
        sparse = require("scipy.sparse", extra="recommend", purpose="TF-IDF content similarity")
        self.x_ = x
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for i, text in enumerate(self.texts):
            words = _WORD.findall(text.lower())
            ids, counts = np.unique([vocab.setdefault(w, len(vocab)) for w in words], return_counts=True)
            rows += [i] * len(ids)
            cols += ids.tolist()
            vals += counts.tolist()
        tf = sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)),
                               shape=(len(self.texts), max(1, len(vocab))))
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=tf.shape[1])
        idf = np.log((1 + len(self.texts)) / (1 + df)) + 1.0
        weighted = tf.multiply(idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.items_ = sparse.diags(1.0 / norms) @ weighted  # (I, V), unit rows
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check()
        profile = np.asarray(self.items_.T @ self.x_[users].T).T  # (B, V)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile /= np.where(norms == 0, 1.0, norms)
        return np.asarray(self.items_ @ profile.T).T.astype(np.float32)  # (B, I)
