"""Detectors on the model's outputs: predicted-label mix (PSI, chi-square) and confidence (KS).

They are fitted on held-out data (the run's val split), not on training data: a model is
over-confident on the examples it was trained on, so training-set confidences would make
every live batch look drifted.
"""

from __future__ import annotations

import numpy as np

from lmforge.monitor._drift import DriftData, DriftDetector, DriftResult
from lmforge.monitor._register import register_detector
from lmforge.monitor._stats import chi2_contingency, ks_2samp, psi

__all__ = ["ConfidenceKS", "PredictionChi2", "PredictionPSI"]


def _shares(counts: np.ndarray, classes: list[str]) -> dict[str, float]:
    total = max(int(counts.sum()), 1)
    return {c: round(float(n) / total, 4) for c, n in zip(classes, counts, strict=True)}


class _LabelMix(DriftDetector):
    needs = "outputs"

    def _fit(self, reference: DriftData) -> None:
        self.classes_ = list(reference.classes)
        self.counts_ = np.bincount(reference.predicted, minlength=len(self.classes_)).astype(np.int64)

    def _current_counts(self, current: DriftData) -> np.ndarray:
        return np.bincount(current.predicted, minlength=len(self.classes_)).astype(np.int64)


@register_detector("prediction-psi")
class PredictionPSI(_LabelMix):
    """Population stability index of the predicted-label mix; drift when PSI > ``threshold``."""

    description = "predicted-label mix, population stability index"

    def __init__(self, threshold: float = 0.2, min_samples: int = 50) -> None:
        self.threshold = threshold
        self.min_samples = min_samples

    def _score(self, current: DriftData) -> DriftResult:
        counts = self._current_counts(current)
        value = psi(self.counts_, counts)
        drift = value > self.threshold
        detail = {
            "reference": _shares(self.counts_, self.classes_),
            "current": _shares(counts, self.classes_),
            "n_reference": self.n_reference_,
            "n_current": len(current),
        }
        verdict = "shifted" if drift else "stable"
        return DriftResult(
            self.name,
            value,
            None,
            self.threshold,
            drift,
            detail,
            f"PSI {value:.3f} {'>' if drift else '<='} {self.threshold:g}: predicted-label mix {verdict}.",
        )


@register_detector("prediction-chi2")
class PredictionChi2(_LabelMix):
    """Chi-square test that reference and current predicted-label counts come from one mix."""

    description = "predicted-label mix, chi-square test of homogeneity"

    def __init__(self, alpha: float = 0.01, min_samples: int = 30) -> None:
        self.alpha = alpha
        self.min_samples = min_samples

    def _score(self, current: DriftData) -> DriftResult:
        counts = self._current_counts(current)
        stat, p, dof = chi2_contingency(np.vstack([self.counts_, counts]))
        drift = p < self.alpha
        detail = {
            "reference": _shares(self.counts_, self.classes_),
            "current": _shares(counts, self.classes_),
            "dof": dof,
            "n_reference": self.n_reference_,
            "n_current": len(current),
        }
        return DriftResult(
            self.name,
            stat,
            p,
            self.alpha,
            drift,
            detail,
            f"chi-square {stat:.2f} (dof {dof}), p = {p:.2g} {'<' if drift else '>='} {self.alpha:g}: "
            f"predicted-label mix {'changed' if drift else 'unchanged'}.",
        )


@register_detector("confidence-ks")
class ConfidenceKS(DriftDetector):
    """Two-sample Kolmogorov-Smirnov test on the confidence of the predicted label."""

    needs = "outputs"
    description = "confidence of the predicted label, Kolmogorov-Smirnov test"

    def __init__(self, alpha: float = 0.01, min_samples: int = 30, max_reference: int = 5000) -> None:
        self.alpha = alpha
        self.min_samples = min_samples
        self.max_reference = max_reference

    def _fit(self, reference: DriftData) -> None:
        conf = reference.confidence
        if conf.size > self.max_reference:
            conf = np.random.default_rng(0).choice(conf, self.max_reference, replace=False)
        self.classes_ = list(reference.classes)
        self.confidence_ = np.sort(conf).astype(np.float32)

    def _score(self, current: DriftData) -> DriftResult:
        conf = current.confidence
        d, p = ks_2samp(self.confidence_, conf)
        drift = p < self.alpha
        detail = {
            "reference_mean": round(float(self.confidence_.mean()), 4),
            "current_mean": round(float(conf.mean()), 4),
            "n_reference": int(self.confidence_.size),
            "n_current": int(conf.size),
        }
        return DriftResult(
            self.name,
            d,
            p,
            self.alpha,
            drift,
            detail,
            f"KS D = {d:.3f}, p = {p:.2g} {'<' if drift else '>='} {self.alpha:g}: confidence "
            f"{'distribution changed' if drift else 'unchanged'} (mean {detail['reference_mean']:.3f} "
            f"-> {detail['current_mean']:.3f}).",
        )
