"""Out-of-scope scores and calibration, on numbers whose answers are known (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.apps.support import Mahalanobis, Neighbours, calibrate, choose_method, oos_scores
from lmforge.errors import DataError, NotFittedError


def test_calibrate_keeps_exactly_the_target_share() -> None:
    scores = np.arange(1.0, 21.0)  # 20 scores
    assert calibrate(scores, 0.95) == 2.0  # drops only the lowest: 19 of 20 kept = 0.95
    assert calibrate(scores, 1.0) == 1.0
    assert calibrate(scores, 0.9) == 3.0
    assert calibrate(scores[::-1], 0.9) == 3.0  # order does not matter


def test_calibrated_threshold_holds_on_a_held_out_split() -> None:
    rng = np.random.default_rng(0)
    val, held_out = rng.normal(size=4000), rng.normal(size=4000)
    threshold = calibrate(val, 0.95)
    assert np.mean(val >= threshold) >= 0.95
    assert abs(np.mean(held_out >= threshold) - 0.95) < 0.015  # sampling error of 4000 draws is ~0.0035


def test_calibrate_refuses_an_empty_validation_split() -> None:
    with pytest.raises(DataError, match="validation split is empty"):
        calibrate(np.array([]), 0.95)


def test_max_prob_and_energy_are_the_textbook_scores() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    scores = oos_scores(logits)
    assert set(scores) == {"max-prob", "energy"}
    np.testing.assert_allclose(scores["max-prob"], [np.exp(2) / (np.exp(2) + 2), 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(scores["energy"], [np.log(np.exp(2) + 2), np.log(3) + 1], rtol=1e-6)


def test_mahalanobis_distance_matches_the_formula_and_flags_a_far_point() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal([0, 0], 1.0, size=(500, 2))
    b = rng.normal([10, 0], 1.0, size=(500, 2))
    x, y = np.r_[a, b], np.r_[np.zeros(500), np.ones(500)]
    det = Mahalanobis(shrinkage=0.0).fit(x, y)
    np.testing.assert_allclose(det.means_, [a.mean(0), b.mean(0)], rtol=1e-5)
    probe = np.array([[0.5, 0.5], [5.0, 8.0]], dtype=np.float32)
    centered = x - np.where(y[:, None] == 0, a.mean(0), b.mean(0))
    precision = np.linalg.inv(centered.T @ centered / len(x))
    expected = [-min((p - m) @ precision @ (p - m) for m in (a.mean(0), b.mean(0))) for p in probe]
    np.testing.assert_allclose(det.score(probe), expected, rtol=1e-4)
    assert det.score(probe)[1] < -50 < det.score(probe)[0]
    again = Mahalanobis.from_arrays(det.to_arrays())
    np.testing.assert_array_equal(again.score(probe), det.score(probe))
    assert set(oos_scores(np.zeros((2, 2)), probe, {"mahalanobis": det})) == {"max-prob", "energy", "mahalanobis"}


def test_mahalanobis_unfitted_raises() -> None:
    with pytest.raises(NotFittedError):
        Mahalanobis().score(np.zeros((1, 2)))


def test_choose_method_picks_the_highest_oos_recall_at_the_same_in_scope_recall() -> None:
    rng = np.random.default_rng(2)
    val = {"max-prob": rng.normal(size=200), "energy": rng.normal(size=200)}
    oos = {"max-prob": rng.normal(size=100) - 0.5, "energy": rng.normal(size=100) - 3.0}
    choice = choose_method(val, oos, 0.9)
    assert choice["best"] == "energy"
    for name in val:
        row = choice["methods"][name]
        assert row["val_in_scope_recall"] >= 0.9
        assert row["oos_recall"] == pytest.approx(float(np.mean(oos[name] < row["threshold"])))
    assert choice["methods"]["energy"]["auroc"] > choice["methods"]["max-prob"]["auroc"]
    assert choose_method(val, None, 0.9)["best"] == "max-prob"  # nothing to compare on
    assert choose_method(val, None, 0.9)["methods"]["energy"]["oos_recall"] is None


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_is_the_nearest_in_scope_similarity_minus_the_nearest_out_of_scope_one() -> None:
    rng = np.random.default_rng(2)
    train, oos = rng.normal(size=(40, 8)) + 3.0, rng.normal(size=(30, 8)) - 3.0
    det = Neighbours(k=1).fit(train, oos)
    probe = rng.normal(size=(5, 8))
    t, o = _unit(train).astype(np.float16).astype(np.float32), _unit(oos).astype(np.float16).astype(np.float32)
    expected = (_unit(probe) @ t.T).max(1) - (_unit(probe) @ o.T).max(1)
    np.testing.assert_allclose(det.score(probe), expected, atol=1e-5)
    # Left out: each OOS example is scored against the others, never against itself (its similarity 1).
    loo = det.score(oos, leave_one_out=True)
    sims = _unit(oos) @ o.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(loo, (_unit(oos) @ t.T).max(1) - sims.max(1), atol=1e-5)
    assert (det.score(oos) < loo).all()  # with itself in the bank an example looks more out of scope
    assert (det.score(train[:5]) > 0).all() and (det.score(oos[:5]) < 0).all()
    again = Neighbours.from_arrays(det.to_arrays())
    np.testing.assert_array_equal(again.score(probe), det.score(probe))
    scores = oos_scores(np.zeros((30, 2)), oos, {"knn": det}, leave_one_out=True)
    np.testing.assert_array_equal(scores["knn"], loo)


def _top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    return -np.sort(-sims, axis=1)[:, :k].mean(axis=1)


def test_knn_averages_the_k_nearest_on_each_side_and_keeps_k_when_saved() -> None:
    rng = np.random.default_rng(5)
    train, oos = rng.normal(size=(40, 8)) + 1.0, rng.normal(size=(30, 8)) - 1.0
    det = Neighbours().fit(train, oos)
    assert det.k == 3  # the default
    probe = rng.normal(size=(6, 8))
    t, o = _unit(train).astype(np.float16).astype(np.float32), _unit(oos).astype(np.float16).astype(np.float32)
    expected = _top_mean(_unit(probe) @ t.T, 3) - _top_mean(_unit(probe) @ o.T, 3)
    np.testing.assert_allclose(det.score(probe), expected, atol=1e-5)
    assert not np.allclose(det.score(probe), Neighbours(k=1).fit(train, oos).score(probe), atol=1e-3)
    sims = _unit(oos) @ o.T
    np.fill_diagonal(sims, -np.inf)  # left out: the 3 nearest *other* examples
    np.testing.assert_allclose(det.score(oos, leave_one_out=True), _top_mean(_unit(oos) @ t.T, 3) - _top_mean(sims, 3),
                               atol=1e-5)
    arrays = det.to_arrays()
    np.testing.assert_array_equal(Neighbours.from_arrays(arrays).score(probe), det.score(probe))
    # A bot saved before k existed scored with the single nearest neighbour, and still does.
    old = Neighbours.from_arrays({k: v for k, v in arrays.items() if k != "knn_k"})
    np.testing.assert_array_equal(old.score(probe), Neighbours(k=1).fit(train, oos).score(probe))
    # Two out-of-scope examples, k 3: the one other example when left out, both otherwise.
    pair = Neighbours().fit(train, oos[:2])
    both = _top_mean(_unit(probe) @ o[:2].T, 2)
    np.testing.assert_allclose(pair.score(probe), _top_mean(_unit(probe) @ t.T, 3) - both, atol=1e-5)
    np.testing.assert_allclose(pair.score(oos[:2], leave_one_out=True),
                               _top_mean(_unit(oos[:2]) @ t.T, 3) - (_unit(oos[:2]) @ o[1::-1].T).diagonal(), atol=1e-5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        Neighbours(k=0)


def test_knn_needs_out_of_scope_examples_and_a_fit() -> None:
    with pytest.raises(DataError, match="at least two out-of-scope examples"):
        Neighbours().fit(np.ones((3, 2)), np.ones((1, 2)))
    with pytest.raises(NotFittedError):
        Neighbours().score(np.ones((1, 2)))
    with pytest.raises(ValueError, match="leave_one_out"):
        Neighbours().fit(np.eye(3), np.eye(3)).score(np.eye(2), leave_one_out=True)
