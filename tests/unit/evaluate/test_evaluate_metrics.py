"""Metrics of lmforge.evaluate against scikit-learn and against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from lmforge.errors import DataError
from lmforge.evaluate import (
    collect_errors,
    compute_metrics,
    error_rate_by_length,
    macro_f1,
    most_confused,
    weak_classes,
)

LABELS = ["a", "b", "c", "d"]


def _random_case(seed: int, missing_class: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, c = 120, len(LABELS)
    classes = [k for k in range(c) if k != missing_class]
    y = rng.choice(classes, size=n)
    proba = rng.dirichlet(np.full(c, 0.7), size=n)
    # Make the model better than chance so every cell of the confusion matrix is exercised.
    proba[np.arange(n), y] += rng.uniform(0, 1.0, size=n)
    proba /= proba.sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("missing_class", [None, 2])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_compute_metrics_matches_sklearn(seed: int, missing_class: int | None) -> None:
    y, proba = _random_case(seed, missing_class)
    pred = proba.argmax(axis=1)
    ids = list(range(len(LABELS)))

    m = compute_metrics(y, proba, LABELS)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(y, pred, labels=ids, average="macro", zero_division=0), abs=1e-12
    )
    assert m["weighted_f1"] == pytest.approx(
        skm.f1_score(y, pred, labels=ids, average="weighted", zero_division=0), abs=1e-12
    )
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    for i, label in enumerate(LABELS):
        row = m["per_class"][label]
        assert row["precision"] == pytest.approx(p[i], abs=1e-12)
        assert row["recall"] == pytest.approx(r[i], abs=1e-12)
        assert row["f1"] == pytest.approx(f[i], abs=1e-12)
        assert row["support"] == s[i]
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=ids).tolist()
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=ids), rel=1e-9)
    assert m["n_test"] == len(y)
    assert macro_f1(y, pred, len(LABELS)) == pytest.approx(m["macro_f1"], abs=1e-15)
    # Plain JSON, no NaN anywhere (json.dumps would write NaN, allow_nan=False refuses it).
    json.dumps(m, allow_nan=False)
    if missing_class is not None:
        absent = m["per_class"][LABELS[missing_class]]
        assert absent["support"] == 0 and absent["recall"] == 0.0 and absent["f1"] == 0.0


def test_macro_f1_counts_a_never_seen_class_as_zero() -> None:
    # Two of three classes perfect, the third never occurs: macro-F1 is 2/3, not 1.
    assert macro_f1([0, 1, 0, 1], [0, 1, 0, 1], 3) == pytest.approx(2 / 3)
    assert macro_f1(np.array([0, 0]), np.array([1, 1]), 2) == 0.0


def test_ece_hand_computed() -> None:
    # Four bins: [0, .25], (.25, .5], (.5, .75], (.75, 1].
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.5, 0.5]])
    y = [0, 1, 1, 0, 0]
    # bin (.75, 1]: confidences .9 (right), .8 (wrong) -> |0.5 - 0.85| * 2/5 = 0.14
    # bin (.5, .75]: confidences .6 (right), .7 (wrong) -> |0.5 - 0.65| * 2/5 = 0.06
    # bin (.25, .5]: confidence .5 (argmax 0, right)   -> |1.0 - 0.5| * 1/5 = 0.10
    m = compute_metrics(y, proba, ["x", "y"], n_bins=4)
    assert m["ece"] == pytest.approx(0.30, abs=1e-12)
    assert [b["count"] for b in m["calibration"]] == [0, 1, 2, 2]
    assert [b["accuracy"] for b in m["calibration"]] == [None, 1.0, 0.5, 0.5]
    assert m["calibration"][3]["confidence"] == pytest.approx(0.85)
    assert [(b["lower"], b["upper"]) for b in m["calibration"]] == [
        (0, 0.25),
        (0.25, 0.5),
        (0.5, 0.75),
        (0.75, 1),
    ]


def test_ece_of_perfect_predictions_is_one_minus_mean_confidence() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.95, 0.03, 0.02]])
    y = [0, 1, 2, 0]
    # Every bin is 100% accurate, so ECE = sum_b n_b/N (1 - conf_b) = 1 - (0.9+0.7+0.6+0.95)/4.
    m = compute_metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == 1.0
    assert m["ece"] == pytest.approx(1 - 3.15 / 4, abs=1e-12)
    assert m["most_confused"] == []


def test_most_confused_orders_by_count_then_matrix_order() -> None:
    cm = [[5, 3, 0], [1, 4, 3], [7, 0, 2]]
    assert most_confused(cm, ["a", "b", "c"], k=3) == [
        {"true": "c", "predicted": "a", "count": 7},
        {"true": "a", "predicted": "b", "count": 3},
        {"true": "b", "predicted": "c", "count": 3},
    ]


@pytest.mark.parametrize(
    ("y", "proba", "match"),
    [
        ([0, 1], np.array([[0.5, 0.5]]), "shape"),
        ([0, 2], np.array([[0.5, 0.5], [0.5, 0.5]]), "outside"),
        ([0, 1], np.array([[2.0, -1.0], [0.5, 0.5]]), "negative"),
        ([0, 1], np.array([[3.0, 1.0], [0.5, 0.5]]), "logits"),
        ([0, 1], np.array([[np.nan, 0.5], [0.5, 0.5]]), "NaN"),
        ([], np.zeros((0, 2)), "empty"),
    ],
)
def test_compute_metrics_rejects_bad_input(y: list[int], proba: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        compute_metrics(y, proba, ["x", "y"])


def test_compute_metrics_renormalizes_low_precision_rows() -> None:
    # A bf16 softmax sums to 1 only to ~3 digits; that is still a probability.
    m = compute_metrics([0, 1], np.array([[0.699, 0.3], [0.2, 0.801]]), ["x", "y"])
    assert m["log_loss"] == pytest.approx(-(math.log(0.699 / 0.999) + math.log(0.801 / 1.001)) / 2)


def test_error_rate_by_length_uses_equal_size_groups() -> None:
    texts = ["a" * n for n in [5, 1, 3, 8, 2, 7, 4, 6]]
    correct = [True, False, True, False, False, True, True, True]
    rows = error_rate_by_length(texts, correct)
    assert [(r["min_chars"], r["max_chars"], r["count"], r["errors"]) for r in rows] == [
        (1, 2, 2, 2),
        (3, 4, 2, 0),
        (5, 6, 2, 0),
        (7, 8, 2, 1),
    ]
    assert rows[0]["error_rate"] == 1.0
    assert len(error_rate_by_length(["x", "y"], [True, False])) == 2


def test_collect_errors_sorted_by_confidence_and_limited() -> None:
    proba = np.array([[0.6, 0.4], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.95, 0.05]])
    y = np.array([1, 0, 1, 1, 0])  # wrong: rows 0 (0.6), 1 (0.9), 2 (0.8)
    errors = collect_errors(["t0", "t1", "t2", "t3", "t4"], y, proba, ["x", "y"], limit=2)
    assert [e["text"] for e in errors] == ["t1", "t2"]
    assert errors[0] == {
        "text": "t1",
        "label": "x",
        "predicted": "y",
        "confidence": 0.9,
        "scores": {"x": 0.1, "y": 0.9},
    }


def test_weak_classes_names_low_f1_classes_with_support() -> None:
    metrics = {
        "macro_f1": 0.7,
        "per_class": {
            "good": {"f1": 0.95, "support": 10},
            "meh": {"f1": 0.55, "support": 10},
            "bad": {"f1": 0.3, "support": 10},
            "absent": {"f1": 0.0, "support": 0},
        },
    }
    assert weak_classes(metrics) == ["bad", "meh"]
