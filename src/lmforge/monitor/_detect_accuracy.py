"""Label-free accuracy estimate: average calibrated confidence (temperature scaling on val).

With a calibrated model, the mean confidence of a batch estimates its accuracy (the
"average confidence" estimator). The temperature is fitted by minimizing the negative
log-likelihood on the reference's labeled examples (the run's val split); the current
estimate is compared with the reference accuracy measured on those same examples.
"""

from __future__ import annotations

import math

import numpy as np

from lmforge.monitor._drift import DriftData, DriftDetector, DriftResult
from lmforge.monitor._register import register_detector
from lmforge.monitor._stats import normal_sf

__all__ = ["AccuracyEstimate", "calibrated_confidence", "fit_temperature"]


def _log_proba(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(proba, 1e-12, 1.0))


def calibrated_confidence(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Max probability after dividing the log-probabilities by ``temperature``; shape (N,)."""
    z = _log_proba(proba) / temperature  # (N, C); log p differs from the logits by a per-row constant
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).max(axis=1)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """Temperature in [0.05, 20] minimizing the NLL of ``softmax(log(proba) / T)`` on labels ``y``."""
    logp = _log_proba(proba)

    def nll(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float((lse - z[np.arange(y.size), y]).mean())

    grid = np.linspace(math.log(0.05), math.log(20.0), 61)
    best = float(grid[int(np.argmin([nll(g) for g in grid]))])
    lo, hi = best - 0.1, best + 0.1
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(40):  # golden-section refinement around the best grid point
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(min(max(math.exp((lo + hi) / 2), 0.05), 20.0))


@register_detector("accuracy-estimate")
class AccuracyEstimate(DriftDetector):
    """Drift when the estimated accuracy falls more than ``tolerance`` below the reference accuracy.

    The drop must also be significant (one-sided z-test on the mean confidence, ``alpha``),
    so a small batch's noise is not a verdict.
    """

    needs = "outputs"
    description = "label-free accuracy estimate (temperature-scaled average confidence)"

    def __init__(
        self, tolerance: float = 0.05, alpha: float = 0.01, min_samples: int = 30, min_labeled: int = 20
    ) -> None:
        self.tolerance = tolerance
        self.alpha = alpha
        self.min_samples = min_samples
        self.min_labeled = min_labeled

    def _fit(self, reference: DriftData) -> None:
        self.classes_ = list(reference.classes)
        index = {c: i for i, c in enumerate(self.classes_)}
        proba = np.asarray(reference.proba)  # present: fit() checks output detectors get outputs
        labeled = [(i, index[y]) for i, y in enumerate(reference.labels or []) if y in index]
        if len(labeled) >= self.min_labeled:
            rows = np.array([i for i, _ in labeled])
            y = np.array([c for _, c in labeled])
            self.temperature_ = fit_temperature(proba[rows], y)
            self.reference_accuracy_ = float((proba[rows].argmax(axis=1) == y).mean())
            self.accuracy_source_ = f"measured on {len(labeled)} labeled reference examples"
        else:
            self.temperature_ = 1.0
            self.reference_accuracy_ = float(calibrated_confidence(proba, 1.0).mean())
            self.accuracy_source_ = (
                f"estimated (only {len(labeled)} reference examples carry one of the model's "
                f"labels; {self.min_labeled} are needed to calibrate)"
            )
        self.reference_estimate_ = float(calibrated_confidence(proba, self.temperature_).mean())

    def _score(self, current: DriftData) -> DriftResult:
        conf = calibrated_confidence(np.asarray(current.proba), self.temperature_)
        estimate = float(conf.mean())
        limit = self.reference_accuracy_ - self.tolerance
        se = max(float(conf.std(ddof=1)) / math.sqrt(conf.size), 1e-9)
        p = normal_sf((self.reference_accuracy_ - estimate) / se)
        drift = estimate < limit and p < self.alpha
        detail = {
            "estimated_accuracy": round(estimate, 4),
            "reference_accuracy": round(self.reference_accuracy_, 4),
            "reference_estimate": round(self.reference_estimate_, 4),
            "temperature": round(self.temperature_, 4),
            "tolerance": self.tolerance,
            "accuracy_source": self.accuracy_source_,
            "n_current": int(conf.size),
        }
        if drift:
            reason = (
                f"estimated accuracy {estimate:.3f} is below the reference {self.reference_accuracy_:.3f} "
                f"minus {self.tolerance:g} (p = {p:.2g})."
            )
        else:
            reason = (
                f"estimated accuracy {estimate:.3f} against the reference {self.reference_accuracy_:.3f} "
                f"(alarm below {limit:.3f} with p < {self.alpha:g}; p = {p:.2g})."
            )
        return DriftResult(self.name, estimate, p, limit, drift, detail, reason)

    def _threshold(self) -> float:
        return float(getattr(self, "reference_accuracy_", 1.0) - self.tolerance)
