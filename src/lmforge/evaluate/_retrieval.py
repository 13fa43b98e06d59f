"""The retrieval baseline: answer with the training response of the most similar training prompt.

A fine-tuned generator is worth its cost only if it beats looking the answer up. This
baseline sees the same training pairs and, for each test prompt, returns the response of the
training prompt nearest by TF-IDF cosine similarity. Features are lowercased words and the
character 3-grams inside them (padded with a space at each end, like scikit-learn's
``char_wb``), so a misspelt question ("cancell my ordr") still finds its neighbour. The
index is a column-sparse matrix in plain NumPy (one array of rows and one of weights per
feature), so a query costs time in the training prompts that share its features.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from lmforge.errors import DataError, NotFittedError

__all__ = ["NearestPrompt", "prompt_features"]

_WORD = re.compile(r"\w+")


def prompt_features(text: str) -> Counter[str]:
    """Term counts of ``text``: each lowercased word (``w:``) and each of its padded character 3-grams."""
    counts: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        counts["w:" + word] += 1
        padded = f" {word} "
        counts.update("c:" + padded[i : i + 3] for i in range(len(padded) - 2))
    return counts


class NearestPrompt:
    """Nearest-neighbour answers over TF-IDF vectors of the prompts (scikit-learn's fit contract).

    IDF is smoothed as in scikit-learn (``ln((1 + n) / (1 + df)) + 1``) and each vector is
    L2-normalized, so the score of a pair is its cosine similarity. Ties go to the earliest
    training prompt.
    """

    def __init__(self) -> None:
        pass

    def fit(self, prompts: Sequence[str], responses: Sequence[str]) -> NearestPrompt:
        """Index the training prompts; ``responses[i]`` answers ``prompts[i]``.

        Raises:
            DataError: no training pairs, or prompts and responses of different lengths.
        """
        if len(prompts) != len(responses):
            raise DataError(f"{len(prompts)} training prompts for {len(responses)} responses; give one for each.")
        if not prompts:
            raise DataError("The retrieval baseline needs training pairs; the train split is empty.")
        docs = [prompt_features(p) for p in prompts]
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        n = len(docs)
        self.idf_ = {term: math.log((1 + n) / (1 + count)) + 1 for term, count in df.items()}
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for row, doc in enumerate(docs):
            weights = self._weights(doc)
            for term, weight in weights.items():
                rows, values = postings.setdefault(term, ([], []))
                rows.append(row)
                values.append(weight)
        self.postings_ = {
            term: (np.asarray(rows, dtype=np.int64), np.asarray(values, dtype=np.float64))
            for term, (rows, values) in postings.items()
        }
        self.responses_ = list(responses)
        return self

    def _weights(self, counts: Counter[str]) -> dict[str, float]:
        weights = {term: count * self.idf_[term] for term, count in counts.items() if term in self.idf_}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {term: w / norm for term, w in weights.items()} if norm > 0 else {}

    def _check_fitted(self) -> None:
        if not hasattr(self, "postings_"):
            raise NotFittedError("NearestPrompt is not fitted; call fit(prompts, responses) first.")

    def similarities(self, prompt: str) -> np.ndarray:
        """(N,) cosine similarity of ``prompt`` to each training prompt (0 where nothing is shared)."""
        self._check_fitted()
        scores = np.zeros(len(self.responses_), dtype=np.float64)
        for term, weight in self._weights(prompt_features(prompt)).items():
            rows, values = self.postings_[term]
            scores[rows] += weight * values
        return scores

    def nearest(self, prompts: Sequence[str]) -> list[int]:
        """Index of the most similar training prompt for each prompt (the first one on a tie)."""
        return [int(np.argmax(self.similarities(p))) for p in prompts]

    def answer(self, prompts: Sequence[str]) -> list[str]:
        """The training response of the nearest training prompt, for each prompt."""
        return [self.responses_[i] for i in self.nearest(prompts)]
