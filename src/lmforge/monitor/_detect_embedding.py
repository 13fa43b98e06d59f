"""Embedding drift: can a classifier tell current texts from reference texts?

Evidently's domain-classifier method: label reference embeddings 0 and current ones 1,
train a logistic regression with stratified cross-validation and measure the out-of-fold
ROC AUC. Same distribution: AUC near 0.5. Drift when the AUC exceeds ``threshold`` and the
chance level plus ``margin_sd`` standard deviations of an uninformative classifier's AUC
at this sample size (small batches give noisy AUCs).
"""

from __future__ import annotations

import numpy as np

from lmforge.monitor._domain import cross_val_scores
from lmforge.monitor._drift import DriftData, DriftDetector, DriftResult
from lmforge.monitor._embed import get_encoder
from lmforge.monitor._register import register_detector
from lmforge.monitor._stats import auc_null_sd, normal_sf, roc_auc

__all__ = ["EmbeddingDrift"]


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


@register_detector("embedding")
class EmbeddingDrift(DriftDetector):
    """Domain classifier on sentence embeddings of the packaged encoder (cross-validated ROC AUC)."""

    requires = (("torch", "train"), ("transformers", "train"))
    description = "sentence embeddings, domain classifier ROC AUC (cross-validated)"

    def __init__(
        self,
        model: str = "minilm-l6",
        threshold: float = 0.55,
        margin_sd: float = 3.0,
        max_reference: int = 500,
        max_current: int = 200,
        folds: int = 5,
        l2: float = 1.0,
        min_samples: int = 50,
        max_length: int = 64,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.margin_sd = margin_sd
        self.max_reference = max_reference
        self.max_current = max_current
        self.folds = folds
        self.l2 = l2
        self.min_samples = min_samples
        self.max_length = max_length
        self.seed = seed

    def _embed(self, texts: list[str]) -> np.ndarray:
        return get_encoder(self.model, self.max_length).encode(texts)

    def _fit(self, reference: DriftData) -> None:
        # Unique texts: a duplicate in two folds is recognised, not generalised, which inflates the AUC.
        texts = list(dict.fromkeys(reference.texts))
        idx = _sample(len(texts), self.max_reference, self.seed)
        self.embeddings_ = self._embed([texts[i] for i in idx]).astype(np.float16)

    def _score(self, current: DriftData) -> DriftResult:
        # Embedding costs about one encoder forward per text: a sample keeps a check affordable.
        idx = _sample(len(current), self.max_current, self.seed + 1)
        cur = self._embed([current.texts[i] for i in idx]).astype(np.float64)
        ref = self.embeddings_.astype(np.float64)
        n = min(len(ref), len(cur))  # balanced classes: AUC and its null spread assume it
        ref = ref[_sample(len(ref), n, self.seed + 2)]
        cur = cur[_sample(len(cur), n, self.seed + 3)]
        x = np.vstack([ref, cur])
        y = np.concatenate([np.zeros(n), np.ones(n)])
        auc = roc_auc(y, cross_val_scores(x, y, folds=self.folds, l2=self.l2, seed=self.seed))
        sd = auc_null_sd(n, n)
        limit = max(self.threshold, 0.5 + self.margin_sd * sd)
        drift = auc > limit
        p = normal_sf((auc - 0.5) / sd)
        detail = {
            "roc_auc": round(auc, 4),
            "effective_threshold": round(limit, 4),
            "null_sd": round(sd, 4),
            "n_per_side": n,
            "model": self.model,
        }
        return DriftResult(
            self.name,
            auc,
            p,
            limit,
            drift,
            detail,
            f"domain classifier ROC AUC {auc:.3f} {'>' if drift else '<='} {limit:.3f}: current texts "
            f"{'are' if drift else 'are not'} told apart from the reference.",
        )

    def _threshold(self) -> float:
        return float(self.threshold)
