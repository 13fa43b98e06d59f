"""Detectors on the input texts alone: text length (KS) and out-of-vocabulary rate."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from lmforge.monitor._drift import DriftData, DriftDetector, DriftResult
from lmforge.monitor._register import register_detector
from lmforge.monitor._stats import ks_2samp, normal_sf
from lmforge.monitor._tokens import tokens

__all__ = ["OOVRate", "TextLengthKS"]


@register_detector("text-length-ks")
class TextLengthKS(DriftDetector):
    """Two-sample Kolmogorov-Smirnov test on text length in characters."""

    description = "text length in characters, Kolmogorov-Smirnov test"

    def __init__(self, alpha: float = 0.01, min_samples: int = 30, max_reference: int = 5000) -> None:
        self.alpha = alpha
        self.min_samples = min_samples
        self.max_reference = max_reference

    def _fit(self, reference: DriftData) -> None:
        lengths = np.array([len(t) for t in reference.texts], dtype=np.int32)
        if lengths.size > self.max_reference:
            lengths = np.random.default_rng(0).choice(lengths, self.max_reference, replace=False)
        self.lengths_ = np.sort(lengths)

    def _score(self, current: DriftData) -> DriftResult:
        lengths = np.array([len(t) for t in current.texts], dtype=np.int32)
        d, p = ks_2samp(self.lengths_, lengths)
        drift = p < self.alpha
        detail = {
            "reference_median": float(np.median(self.lengths_)),
            "current_median": float(np.median(lengths)),
            "n_reference": int(self.lengths_.size),
            "n_current": int(lengths.size),
        }
        return DriftResult(
            self.name,
            d,
            p,
            self.alpha,
            drift,
            detail,
            f"KS D = {d:.3f}, p = {p:.2g} {'<' if drift else '>='} {self.alpha:g}: text length "
            f"{'changed' if drift else 'unchanged'} (median {detail['reference_median']:g} -> "
            f"{detail['current_median']:g} characters).",
        )


def _oov_rates(texts: list[str], vocab: set[str]) -> np.ndarray:
    """Per text, the share of its tokens not in ``vocab`` (texts without tokens are left out)."""
    rates = []
    for text in texts:
        toks = tokens(text)
        if toks:
            rates.append(sum(t not in vocab for t in toks) / len(toks))
    return np.array(rates, dtype=np.float64)


@register_detector("oov-rate")
class OOVRate(DriftDetector):
    """Rise of the out-of-vocabulary rate: new words, another language, a new product name.

    The vocabulary is learned from one half of the reference texts and the baseline rate is
    measured on the other half, so the baseline counts the new words any fresh sample of
    the same distribution brings. Drift when the mean per-text OOV rate rises by more than
    ``min_increase`` and the rise is significant (one-sided z-test, ``alpha``).
    """

    description = "out-of-vocabulary rate (reference vocabulary; word and CJK-character tokens)"

    def __init__(
        self, alpha: float = 0.01, min_increase: float = 0.05, min_samples: int = 30, max_vocab: int = 50000
    ) -> None:
        self.alpha = alpha
        self.min_increase = min_increase
        self.min_samples = min_samples
        self.max_vocab = max_vocab

    def _fit(self, reference: DriftData) -> None:
        # Unique texts: a duplicate on both sides of the split would make the baseline too low.
        texts = list(dict.fromkeys(reference.texts))
        order = np.random.default_rng(0).permutation(len(texts))
        half = len(order) // 2
        counts: Counter[str] = Counter()
        for i in order[:half]:
            counts.update(tokens(texts[i]))
        self.vocab_ = sorted(w for w, _ in counts.most_common(self.max_vocab))
        rates = _oov_rates([texts[i] for i in order[half:]], set(self.vocab_))
        self.reference_rate_ = float(rates.mean()) if rates.size else 0.0
        self.reference_var_ = float(rates.var(ddof=1)) if rates.size > 1 else 0.0
        self.reference_n_ = int(rates.size)

    def _score(self, current: DriftData) -> DriftResult:
        rates = _oov_rates(current.texts, set(self.vocab_))
        if rates.size < self.min_samples:
            return self.no_verdict(
                f"Only {rates.size} current texts hold word tokens; oov-rate needs {self.min_samples}.",
                n_current=int(rates.size),
            )
        rate = float(rates.mean())
        se = math.sqrt(
            float(rates.var(ddof=1)) / rates.size + self.reference_var_ / max(self.reference_n_, 1)
        )
        increase = rate - self.reference_rate_
        p = normal_sf(increase / se) if se > 0 else (0.0 if increase > 0 else 1.0)
        drift = p < self.alpha and increase > self.min_increase
        detail = {
            "reference_rate": round(self.reference_rate_, 4),
            "current_rate": round(rate, 4),
            "increase": round(increase, 4),
            "vocabulary_size": len(self.vocab_),
            "n_reference": self.reference_n_,
            "n_current": int(rates.size),
        }
        return DriftResult(
            self.name,
            rate,
            p,
            self.alpha,
            drift,
            detail,
            f"OOV rate {self.reference_rate_:.3f} -> {rate:.3f} (p = {p:.2g}); drift needs a rise "
            f"above {self.min_increase:g} with p < {self.alpha:g}.",
        )
