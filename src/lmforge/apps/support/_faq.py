"""The FAQ index: the encoder's normalized embeddings of the questions plus BM25, one hybrid score.

Embeddings find paraphrases that share no word with the FAQ question; BM25 finds the rare
words (a product name, "IBAN") that an encoder fine-tuned on intents blurs. The hybrid score is
``w * cosine + (1 - w) * bm25 / max(bm25)`` per question. Stored as safetensors (the embedding
matrix) and JSON (entries, BM25 statistics): nothing is unpickled when a bot loads.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import RunDirError
from lmforge.rundir import atomic_write_json

__all__ = ["BM25", "FaqEntry", "FaqIndex", "words"]

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (BM25 terms, and the grounding check's overlap)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ question with its answer (and intent, when the file has one)."""

    question: str
    answer: str
    intent: str | None = None


class BM25:
    """Okapi BM25 (k1 1.5, b 0.75, the non-negative idf ``log(1 + (N - df + .5) / (df + .5))``)."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b

    def fit(self, documents: Sequence[str]) -> BM25:
        """Index ``documents`` (postings per term, document lengths, idf)."""
        docs = [Counter(words(d)) for d in documents]
        self.lengths_ = np.array([sum(c.values()) for c in docs], dtype=np.float32)
        self.avgdl_ = float(self.lengths_.mean()) if len(docs) else 0.0
        postings: dict[str, list[list[int]]] = {}
        for i, counts in enumerate(docs):
            for term, tf in counts.items():
                postings.setdefault(term, []).append([i, tf])
        n = len(docs)
        self.idf_ = {t: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in postings.items()}
        self.postings_ = postings
        return self

    def scores(self, query: str) -> np.ndarray:
        """(N,) BM25 score of every document for ``query``."""
        out = np.zeros(len(self.lengths_), dtype=np.float32)
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths_ / max(self.avgdl_, 1e-9))  # (N,)
        for term in set(words(query)):
            post = self.postings_.get(term)
            if not post:
                continue
            idx = np.array([p[0] for p in post])
            tf = np.array([p[1] for p in post], dtype=np.float32)
            out[idx] += self.idf_[term] * tf * (self.k1 + 1.0) / (tf + norm[idx])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "lengths": self.lengths_.tolist(), "postings": self.postings_}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BM25:
        out = cls(float(data["k1"]), float(data["b"]))
        out.lengths_ = np.asarray(data["lengths"], dtype=np.float32)
        out.avgdl_ = float(out.lengths_.mean()) if len(out.lengths_) else 0.0
        out.postings_ = {str(t): [[int(i), int(tf)] for i, tf in p] for t, p in data["postings"].items()}
        n = len(out.lengths_)
        out.idf_ = {t: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in out.postings_.items()}
        return out


class FaqIndex:
    """Entries, their question embeddings (N, H, unit length) and a BM25 index of the questions."""

    ENTRIES = "faq.json"
    EMBEDDINGS = "faq_embeddings.safetensors"
    BM25_FILE = "faq_bm25.json"

    def __init__(self, entries: list[FaqEntry], embeddings: np.ndarray, bm25: BM25) -> None:
        self.entries = entries
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.bm25 = bm25

    @classmethod
    def build(cls, entries: list[FaqEntry], embeddings: np.ndarray) -> FaqIndex:
        """An index of ``entries`` whose questions the caller embedded (normalized) as ``embeddings``."""
        return cls(entries, embeddings, BM25().fit([e.question for e in entries]))

    def scores(self, query_embedding: np.ndarray, query: str, weight: float) -> np.ndarray:
        """(N,) hybrid score of every entry: ``weight`` x cosine + (1 - weight) x max-normalized BM25."""
        cosine = self.embeddings @ np.asarray(query_embedding, dtype=np.float32)  # (N,)
        bm25 = self.bm25.scores(query) if weight < 1.0 else np.zeros_like(cosine)
        top = float(bm25.max()) if bm25.size else 0.0
        out: np.ndarray = weight * cosine + (1.0 - weight) * (bm25 / top if top > 0 else bm25)
        return out

    def search(self, query_embedding: np.ndarray, query: str, weight: float, k: int,
               intent: str | None = None) -> list[tuple[int, float]]:
        """The ``k`` best entries as ``(index, score)``, best first; with ``intent``, only entries of
        that intent (all entries when none has it)."""
        scores = self.scores(query_embedding, query, weight)
        pool = np.arange(len(self.entries))
        if intent is not None:
            own = np.array([i for i, e in enumerate(self.entries) if e.intent == intent], dtype=np.int64)
            if own.size:
                pool = own
        best = pool[np.argsort(-scores[pool], kind="stable")[:k]]
        return [(int(i), float(scores[i])) for i in best]

    def save(self, folder: Path) -> None:
        """Write the three files into ``folder``."""
        st = require("safetensors.numpy", extra="train", purpose="Saving the FAQ index")
        atomic_write_json(folder / self.ENTRIES, [vars(e) for e in self.entries])
        st.save_file({"embeddings": np.ascontiguousarray(self.embeddings)}, str(folder / self.EMBEDDINGS))
        atomic_write_json(folder / self.BM25_FILE, self.bm25.to_json())

    @classmethod
    def load(cls, folder: Path) -> FaqIndex:
        """The index :meth:`save` wrote (safetensors and JSON only)."""
        st = require("safetensors.numpy", extra="train", purpose="Loading the FAQ index")
        try:
            raw = json.loads((folder / cls.ENTRIES).read_text(encoding="utf-8"))
            entries = [FaqEntry(str(e["question"]), str(e["answer"]), e.get("intent")) for e in raw]
            embeddings = st.load_file(str(folder / cls.EMBEDDINGS))["embeddings"]
            bm25 = BM25.from_json(json.loads((folder / cls.BM25_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunDirError(f"The FAQ index in {folder} is missing or damaged ({exc}); run `lmforge bot build` "
                              "again.") from None
        if len(embeddings) != len(entries):
            raise RunDirError(f"The FAQ index in {folder} has {len(entries)} entries but {len(embeddings)} "
                              "embeddings; run `lmforge bot build` again.")
        return cls(entries, embeddings, bm25)
