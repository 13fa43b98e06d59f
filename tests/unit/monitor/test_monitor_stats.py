"""The statistics behind the detectors, against SciPy / scikit-learn and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmforge.monitor._detect_accuracy import calibrated_confidence, fit_temperature
from lmforge.monitor._stats import auc_null_sd, chi2_contingency, chi2_sf, ks_2samp, psi, roc_auc
from lmforge.monitor._tokens import tokens


@pytest.mark.parametrize(
    ("n", "m", "shift"), [(50, 60, 0.0), (200, 300, 0.2), (30, 1000, 0.5), (500, 500, 0.05)]
)
def test_ks_matches_scipy(n: int, m: int, shift: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(shift, size=m)
    d, p = ks_2samp(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    # The Kolmogorov limit distribution (what this returns) and SciPy's finite-n one agree closely.
    assert p == pytest.approx(stats.kstwobign.sf(math.sqrt(n * m / (n + m)) * d), rel=1e-6, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, abs=0.05)


@pytest.mark.parametrize(
    ("x", "dof"), [(0.5, 1), (3.0, 2), (10.0, 3), (50.0, 10), (1e-3, 4), (200.0, 50), (5.0, 1)]
)
def test_chi2_sf_matches_scipy(x: float, dof: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-9, abs=1e-300)


def test_chi2_contingency_matches_scipy_and_drops_empty_columns() -> None:
    stats = pytest.importorskip("scipy.stats")
    table = np.array([[30, 50, 20, 0], [10, 60, 30, 0]])
    stat, p, dof = chi2_contingency(table)
    ref = stats.chi2_contingency(table[:, :3], correction=False)
    assert (stat, dof) == (pytest.approx(ref.statistic), ref.dof)
    assert p == pytest.approx(ref.pvalue)
    assert chi2_contingency(np.array([[5, 0], [7, 0]])) == (0.0, 1.0, 0)


def test_psi_by_hand() -> None:
    # (0.5-0.6)ln(0.5/0.6) + (0.5-0.4)ln(0.5/0.4)
    expected = -0.1 * math.log(0.5 / 0.6) + 0.1 * math.log(0.5 / 0.4)
    assert psi(np.array([60, 40]), np.array([50, 50])) == pytest.approx(expected)
    assert psi(np.array([1, 1]), np.array([1, 1])) == 0.0
    assert math.isfinite(psi(np.array([10, 0]), np.array([0, 10])))  # empty bins are floored, not infinite


def test_roc_auc_matches_sklearn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = rng.integers(0, 5, 200).astype(float) + y  # ties everywhere
    assert roc_auc(y, scores) == pytest.approx(metrics.roc_auc_score(y, scores))
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc_null_sd(100, 100) == pytest.approx(math.sqrt(201 / 120000))


def test_logistic_regression_matches_sklearn(torch_one_thread: None) -> None:
    from lmforge.monitor._domain import fit_logistic

    linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5))
    y = (x @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) + 0.3 + rng.normal(size=300) > 0).astype(float)
    w = fit_logistic(x, y, l2=2.0)
    ref = linear.LogisticRegression(C=0.5, tol=1e-10, max_iter=1000).fit(x, y)  # C = 1 / l2
    np.testing.assert_allclose(w[:-1], ref.coef_[0], rtol=1e-3, atol=1e-4)
    assert w[-1] == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_cross_validated_auc_is_chance_on_noise_and_high_on_signal(torch_one_thread: None) -> None:
    from lmforge.monitor._domain import cross_val_scores

    rng = np.random.default_rng(2)
    y = np.repeat([0.0, 1.0], 150)
    noise = rng.normal(size=(300, 20))
    assert abs(roc_auc(y, cross_val_scores(noise, y)) - 0.5) < 4 * auc_null_sd(150, 150)
    signal = noise + y[:, None] * 0.8
    assert roc_auc(y, cross_val_scores(signal, y)) > 0.9


def test_temperature_scaling_recovers_the_temperature() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(4000, 3))
    true_t = 2.5  # the model is over-confident by this factor
    calibrated = np.exp(logits / true_t) / np.exp(logits / true_t).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in calibrated])
    overconfident = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(true_t, rel=0.1)
    # After scaling, mean confidence matches accuracy (what the accuracy estimate relies on).
    acc = float((overconfident.argmax(1) == y).mean())
    assert calibrated_confidence(overconfident, t).mean() == pytest.approx(acc, abs=0.02)
    assert overconfident.max(1).mean() > acc + 0.1


def test_tokens_words_cjk_and_numbers() -> None:
    assert tokens("Flight UA123 delayed 45 min!! 航班延误了") == [
        "flight",
        "ua123",
        "delayed",
        "<num>",
        "min",
        "航",
        "班",
        "延",
        "误",
        "了",
    ]
    assert tokens("abc中文def") == ["abc", "中", "文", "def"]
    assert tokens("  ...  ") == []
