"""The two-tower text model: a user's history text and an item's text, embedded by one encoder.

Training pairs are (history text -> next item text): for each training positive after a
user's first, the texts of the ``history_items`` positives before it (most recent first) and
the item's own text; a seeded sample of at most ``max_pairs`` of them fine-tunes the spec's
encoder with :func:`lmforge.train.train_contrastive` (in-batch negatives). Afterwards every
item text is embedded once (``item_embeddings``, stored as safetensors) and a user's vector is
the embedding of their history text, so an item no one has interacted with still has a score:
the text model is what recommends new items. A user's vector averages the embeddings of up to
``history_windows`` consecutive history texts, so it reads more than the latest few items.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.catalog import resolve_model
from lmforge.config import Spec
from lmforge.errors import NotFittedError
from lmforge.predict import TextEmbedder
from lmforge.train import train_contrastive

__all__ = ["TextTower", "VectorScorer", "history_text", "history_windows", "training_pairs", "user_vectors"]

log = logging.getLogger(__name__)

SEPARATOR = " | "
"""Between the item texts of a history."""


def history_text(texts: Sequence[str], history: Sequence[int] | np.ndarray, n: int) -> str:
    """The texts of the last ``n`` items of ``history`` (oldest first in), most recent first, joined."""
    recent = [texts[i] for i in reversed(list(history)[-n:]) if texts[i]]
    return SEPARATOR.join(recent)


def training_pairs(texts: Sequence[str], histories: Sequence[np.ndarray], n: int, max_pairs: int,
                   rng: np.random.Generator) -> tuple[list[str], list[str], list[str]]:
    """(history texts, next item texts, next item keys): a seeded sample of at most ``max_pairs``."""
    candidates = [(u, t) for u, seq in enumerate(histories) for t in range(1, len(seq))
                  if texts[seq[t]] and any(texts[i] for i in seq[max(0, t - n) : t])]
    if len(candidates) > max_pairs:
        pick = np.sort(rng.choice(len(candidates), size=max_pairs, replace=False))
        candidates = [candidates[i] for i in pick]
    queries = [history_text(texts, histories[u][:t], n) for u, t in candidates]
    items = [int(histories[u][t]) for u, t in candidates]
    return queries, [texts[i] for i in items], [str(i) for i in items]


class TextTower:
    """Fine-tunes the spec's encoder into ``model_dir`` and scores users against item texts."""

    def __init__(self, spec: Spec, texts: Sequence[str], model_dir: Path) -> None:
        self.spec = spec
        self.texts = list(texts)
        self.model_dir = model_dir

    def fit(self, histories: Sequence[np.ndarray], rng: np.random.Generator) -> TextTower:
        """Train on the pairs of ``histories`` (each user's fit positives, oldest first), then embed items."""
        cfg = self.spec.recommend.text
        queries, docs, keys = training_pairs(self.texts, histories, cfg.history_items, cfg.max_pairs, rng)
        log.info("text model: %d training pairs", len(queries))
        self.summary_: dict[str, Any] = train_contrastive(
            resolve_model(self.spec.model.name), queries, docs, self.model_dir, self.spec.train,
            max_length=self.spec.model.max_length, epochs=cfg.epochs, temperature=cfg.temperature, doc_keys=keys)
        self.embedder_ = TextEmbedder(self.model_dir, max_length=self.spec.model.max_length)
        self.item_embeddings_ = self.embed_items()
        return self

    def embed_items(self) -> np.ndarray:
        """(I, H) unit embeddings of every item text; zero rows for items without text."""
        have = [i for i, t in enumerate(self.texts) if t]
        out = np.zeros((len(self.texts), self.embedder_.dim), dtype=np.float32)
        if have:
            out[have] = self.embedder_.encode([self.texts[i] for i in have])
        return out

    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(U, H) unit vectors: the mean embedding of each user's history windows (the last
        ``history_items`` positives, the ones before them, ... up to ``history_windows``); zero rows
        for users with no text in their history."""
        if not hasattr(self, "embedder_"):
            raise NotFittedError("TextTower is not fitted: call fit() first.")
        cfg = self.spec.recommend.text
        return user_vectors(self.embedder_, self.texts, histories, cfg.history_items, cfg.history_windows,
                            self.item_embeddings_.shape[1])


def history_windows(texts: Sequence[str], history: Sequence[int] | np.ndarray, n: int, windows: int) -> list[str]:
    """The history texts a user vector averages: the last ``n`` items, the ``n`` before them, ...
    (at most ``windows`` of them; those with no text left out)."""
    out: list[str] = []
    for w in range(windows):
        end = len(history) - w * n
        if end <= 0:
            break
        q = history_text(texts, list(history)[:end], n)
        if q:
            out.append(q)
    return out


def user_vectors(embedder: Any, texts: Sequence[str], histories: Sequence[Sequence[int] | np.ndarray], n: int,
                 windows: int, dim: int) -> np.ndarray:
    """(U, dim) unit vectors: the mean of ``embedder.encode`` over each history's :func:`history_windows`;
    zero rows for histories with no text. Training and serving (``{history}`` requests) share it."""
    owners: list[int] = []
    queries: list[str] = []
    for u, history in enumerate(histories):
        mine = history_windows(texts, history, n, windows)
        owners += [u] * len(mine)
        queries += mine
    out = np.zeros((len(histories), dim), dtype=np.float32)
    if queries:
        np.add.at(out, np.asarray(owners), embedder.encode(queries))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms == 0, 1.0, norms)
    return out


class VectorScorer:
    """Scores of users against items as dot products of stored unit vectors (the text model's scores)."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users = users
        self.items = items

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items.T  # (B, I)
