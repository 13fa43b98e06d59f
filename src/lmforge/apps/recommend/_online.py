"""What ``POST /v1/recommend`` answers: a known user, a history the model has never seen, a text.

A known user gets the stored top items (``top_items.safetensors``: what ``lmforge recommend
predict`` lists, training items excluded). A history (item ids, oldest first) is scored as the
served model scores a user, from what :func:`store_online` keeps at train time:

- ``text``: the user vector of :func:`~lmforge.apps.recommend._text.user_vectors` over the
  history's texts (embedded by the ONNX int8 encoder, ``recommender/encoder-int8/``) against
  the stored item embeddings;
- ``ease`` / ``itemknn``: the history's row of the item-item matrix (``ease.safetensors`` or
  ``itemknn.safetensors``: the active items and their (A, A) float32 weights). It is stored only
  when A <= :data:`MAX_ONLINE_ITEMS` (A^2 x 4 bytes: 400 MB at the limit); otherwise a history
  is scored without it and the answer's ``model`` says so (``blend without ease``);
- ``popularity``: the stored counts; ``tfidf``: the stored TF-IDF rows (CSR) of the items;
- ``blend``: the stored weights over the per-history standardized parts, as for a known user.

The history's own items are never recommended. A text is ranked against the item embeddings
like ``recommend similar --text`` (items without text left out). Everything loads from JSON and
safetensors, after the server verified the directory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.apps.recommend._blend import standardize
from lmforge.apps.recommend._metrics import tie_order
from lmforge.apps.recommend._store import RecDir
from lmforge.apps.recommend._text import user_vectors
from lmforge.compress import export_int8_embedder
from lmforge.errors import DataError
from lmforge.predict import OnnxEmbedder

__all__ = ["ENCODER", "MAX_ONLINE_ITEMS", "Answer", "OnlineRecommender", "RecommendError", "store_online"]

MAX_ONLINE_ITEMS = 10_000
"""The most active items whose item-item matrix is stored for ``{history}`` requests."""
ENCODER = "encoder-int8"
"""The ONNX int8 query encoder's folder under ``DIR/recommender/``."""
_CHECK_TEXTS = 256


class RecommendError(DataError):
    """A request the recommender cannot answer as asked: ``status`` and ``code`` for the HTTP error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Answer:
    """Items (ids as in the input files), best first, their scores, and the model that scored them."""

    items: list[str]
    scores: list[float]
    model: str


def _needs(selected: str, weights: dict[str, float]) -> list[str]:
    if selected == "blend":
        return [n for n, w in weights.items() if w > 0]
    return [selected]


def store_online(rec: RecDir, selected: str, weights: dict[str, float], models: dict[str, Any],
                 texts: Sequence[str], max_length: int, *, max_items: int = MAX_ONLINE_ITEMS) -> dict[str, Any]:
    """Keep what ``{history}`` and ``{text}`` requests need (see the module docstring); say what was kept.

    An item-item matrix over more than ``max_items`` active items is not stored (``history_missing``)."""
    kept: list[str] = []
    missing: dict[str, str] = {}
    for name in _needs(selected, weights):
        if name == "text":  # the stored item embeddings and the encoder below
            continue
        model = models[name]
        if name in ("ease", "itemknn"):
            if len(model.active_) > max_items:
                missing[name] = (f"{len(model.active_)} items with positives > {max_items}: "
                                 "the item-item matrix is not stored")
                continue
            rec.save_tensors(name, {"active": model.active_.astype(np.int64), "weights": model.w_})
        elif name == "popularity":
            rec.save_tensors(name, {"counts": np.asarray(model.counts_, dtype=np.float32)})
        elif name == "tfidf":
            m = model.items_.tocsr()
            rec.save_tensors(name, {"data": m.data.astype(np.float32), "indices": m.indices.astype(np.int64),
                                    "indptr": m.indptr.astype(np.int64), "shape": np.asarray(m.shape, np.int64)})
        kept.append(name)
    encoder = None
    if "text" in models:
        have = [t for t in texts if t]
        sample = [have[i] for i in np.linspace(0, len(have) - 1, min(len(have), _CHECK_TEXTS)).astype(int)]
        encoder = export_int8_embedder(rec.model, rec.store / ENCODER, max_length=max_length, texts=sample)
    return {"history_parts": kept, "history_missing": missing,
            "encoder": None if encoder is None else {k: encoder[k] for k in ("quantization", "min_cosine_vs_torch")}}


class _OneAtATime:
    """An embedder whose ``encode`` runs one call at a time: each ONNX run takes every intra-op thread
    it was given, so concurrent requests queue for it instead of oversubscribing the cores."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            out: np.ndarray = self.embedder.encode(texts)
        return out


class OnlineRecommender:
    """A trained recommender directory loaded for requests (see the module docstring).

    Args:
        root: the directory (verified by the caller first).
        embedder: what embeds texts and histories; default the directory's ONNX int8 encoder.
        threads: the ONNX encoder's intra-op threads (None: ONNX Runtime's default, every core).
    """

    def __init__(self, root: str | Path, embedder: Any = None, *, threads: int | None = None) -> None:
        rec = RecDir(root)
        self.meta = rec.require_trained()
        index = json.loads((rec.data / "index.json").read_text(encoding="utf-8"))
        self.user_ids: list[str] = index["users"]
        self.item_ids: list[str] = index["items"]
        self.users = {u: i for i, u in enumerate(self.user_ids)}
        self.items = {it: i for i, it in enumerate(self.item_ids)}
        with (rec.data / "items.jsonl").open(encoding="utf-8") as fh:
            self.texts = [json.loads(line)["text"] for line in fh if line.strip()]
        top = rec.load_tensors("top_items")
        self.top_items, self.top_scores = top["items"], top["scores"]
        self.selected: str = self.meta["selected"]
        self.weights: dict[str, float] = dict(self.meta.get("blend_weights") or {})
        self.max_k = int(self.meta["max_k"])
        self.ties = tie_order(len(self.item_ids))
        online = self.meta.get("online") or {}
        self.parts = {name: rec.load_tensors(name) for name in online.get("history_parts", [])}
        self.item_embeddings: np.ndarray | None = None
        self.embedder = embedder
        if self.meta["text_model"]:
            self.item_embeddings = rec.load_tensors("item_embeddings")["embeddings"]
            self.has_text = self.item_embeddings.any(axis=1)
            if self.embedder is None:
                self.embedder = _OneAtATime(OnnxEmbedder(rec.store / ENCODER, threads, spinning=False))

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise RecommendError(422, "k_out_of_range",
                                 f"k must be in 1..{self.max_k} (recommend.max_k when it was trained), got {k}.")

    def _top(self, scores: np.ndarray, k: int, model: str) -> Answer:
        order = np.lexsort((self.ties, -scores))[:k]
        order = order[np.isfinite(scores[order])]
        return Answer([self.item_ids[i] for i in order], [round(float(scores[i]), 6) for i in order], model)

    def for_user(self, user: str, k: int) -> Answer:
        """The stored top ``k`` of a known user (what ``recommend predict`` lists)."""
        self.check_k(k)
        u = self.users.get(user)
        if u is None:
            raise RecommendError(404, "unknown_user", f"Unknown user '{user}': not in the training data of this "
                                 "recommender. Send their items instead: {\"history\": [item, ...], \"k\": ...}.")
        ok = np.isfinite(self.top_scores[u])
        items, scores = self.top_items[u][ok][:k], self.top_scores[u][ok][:k]
        return Answer([self.item_ids[i] for i in items], [round(float(s), 6) for s in scores], self.selected)

    def _history_index(self, history: Sequence[str]) -> np.ndarray:
        unknown = list(dict.fromkeys(i for i in history if i not in self.items))
        if unknown:
            raise RecommendError(422, "unknown_items",
                                 f"{len(unknown)} items of the history are unknown to this recommender: "
                                 f"{', '.join(repr(i) for i in unknown[:10])}{' ...' if len(unknown) > 10 else ''}. "
                                 "Send item ids as in its input files.")
        return np.asarray(list(dict.fromkeys(self.items[i] for i in history)), dtype=np.int64)

    def _part(self, name: str, idx: np.ndarray) -> np.ndarray | None:
        """(I,) float32 scores of the history ``idx`` by part ``name``; None when it was not stored."""
        n = len(self.item_ids)
        if name == "text":
            if self.item_embeddings is None:
                return None
            vec = user_vectors(self.embedder, self.texts, [idx], int(self.meta["history_items"]),
                               int(self.meta.get("history_windows", 1)), self.item_embeddings.shape[1])[0]
            return self.item_embeddings @ vec
        stored = self.parts.get(name)
        if stored is None:
            return None
        if name == "popularity":
            return stored["counts"]
        if name == "tfidf":
            return self._tfidf(stored, idx)
        active, w = stored["active"], stored["weights"]
        rows = np.flatnonzero(np.isin(active, idx))  # the history's items among the active ones
        out = np.zeros(n, dtype=np.float32)
        out[active] = w[rows].sum(axis=0)  # = x @ w for the history's binary row x, reading only its rows
        return out

    @staticmethod
    def _tfidf(stored: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        data, indices, indptr = stored["data"], stored["indices"], stored["indptr"]
        n_items, n_words = (int(v) for v in stored["shape"])
        profile = np.zeros(n_words, dtype=np.float64)
        for i in idx:
            np.add.at(profile, indices[indptr[i] : indptr[i + 1]], data[indptr[i] : indptr[i + 1]])
        norm = np.linalg.norm(profile)
        profile /= norm if norm else 1.0
        rows = np.repeat(np.arange(n_items), np.diff(indptr))
        return np.bincount(rows, weights=data * profile[indices], minlength=n_items).astype(np.float32)

    def for_history(self, history: Sequence[str], k: int) -> Answer:
        """The top ``k`` for a user with these items (oldest first), none of them recommended."""
        self.check_k(k)
        idx = self._history_index(history)
        names = _needs(self.selected, self.weights)
        parts = {n: self._part(n, idx) for n in names}
        missing = [n for n, s in parts.items() if s is None]
        if self.selected == "blend":
            total = np.zeros(len(self.item_ids), dtype=np.float64)
            for name, s in parts.items():
                if s is not None:
                    total += self.weights[name] * standardize(np.asarray(s, dtype=np.float64)[None, :])[0]
            model = "blend" + (f" without {', '.join(missing)}" if missing else "")
            if len(missing) == len(parts):
                raise RecommendError(409, "history_unsupported", "This recommender stored no model that scores "
                                     f"a new history ({', '.join(missing)} not stored). Train with fewer items.")
        else:
            score = parts[self.selected]
            if score is None:
                raise RecommendError(409, "history_unsupported", f"The served model ({self.selected}) was not "
                                     "stored for new histories (catalogue too large). Ask for known users instead.")
            total = np.asarray(score, dtype=np.float64).copy()
            model = self.selected
        total[idx] = -np.inf
        return self._top(total, k, model)

    def for_text(self, text: str, k: int) -> Answer:
        """The ``k`` items whose text embeds nearest ``text`` (as ``recommend similar --text``)."""
        self.check_k(k)
        if self.item_embeddings is None:
            raise RecommendError(409, "no_text_model", "This recommender has no text model (it was trained "
                                 "without item texts), so it cannot rank items by a text.")
        query = self.embedder.encode([text])[0]
        scores = (self.item_embeddings @ query).astype(np.float64)
        scores[~self.has_text] = -np.inf
        return self._top(scores, k, "text")
