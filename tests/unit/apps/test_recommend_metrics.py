"""Ranking metrics against hand-computed values; the baselines against closed forms on toys; the blend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmforge.apps.recommend import (
    EASE,
    Blend,
    ItemKNN,
    Popularity,
    TfidfContent,
    by_user,
    evaluate_scores,
    fit_weights,
    interaction_matrix,
    ranking_metrics,
    simplex_grid,
    standardize,
    tie_order,
    top_k,
)
from lmforge.errors import NotFittedError


def test_ranking_metrics_match_hand_computed_values() -> None:
    top = np.array([[3, 1, 0, 2], [0, 1, 2, 3], [0, 1, 2, 3]])
    relevant = [np.array([1, 2]), np.array([3]), np.array([], dtype=np.int64)]  # the third user is skipped
    m = ranking_metrics(top, relevant, ks=(2, 4))
    # user 0: hits at ranks 2 and 4 of 2 relevant; user 1: a hit at rank 4 of 1
    ndcg2_u0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg4_u0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    ndcg4_u1 = 1 / math.log2(5)
    assert m["users"] == 2
    assert m["NDCG@2"] == pytest.approx(ndcg2_u0 / 2)
    assert m["NDCG@4"] == pytest.approx((ndcg4_u0 + ndcg4_u1) / 2)
    assert m["HR@2"] == pytest.approx(0.5)
    assert m["HR@4"] == pytest.approx(1.0)
    assert m["Recall@2"] == pytest.approx(0.25)
    assert m["Recall@4"] == pytest.approx(1.0)


def test_top_k_excludes_training_items_breaks_ties_in_a_fixed_order_and_keeps_to_candidates() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, 1.0, 1.0, 1.0]])
    ties = tie_order(4)
    assert sorted(ties.tolist()) == [0, 1, 2, 3] and ties.tolist() != [0, 1, 2, 3]  # not the index order
    by_tie = np.argsort(ties).tolist()
    assert top_k(scores.copy(), [np.array([1]), np.array([], dtype=np.int64)], 3).tolist() == [[3, 2, 0], by_tie[:3]]
    only = top_k(scores.copy(), [np.array([2]), np.array([0])], 2, candidates=np.array([0, 2]))
    assert only[0].tolist()[0] == 0  # item 2 is the user's, items 1 and 3 are not candidates
    assert only[1].tolist()[0] == 2


def test_evaluate_scores_never_counts_a_training_item() -> None:
    # the model loves item 0, which user 0 already has: it must rank item 1 first instead
    train = [np.array([0]), np.array([], dtype=np.int64)]
    held = [np.array([1]), np.array([0])]
    m = evaluate_scores(lambda users: np.tile([3.0, 2.0, 1.0], (len(users), 1)), train, held, ks=(1,))
    assert m["HR@1"] == pytest.approx(1.0)
    assert m["users"] == 2


def test_ease_equals_per_item_ridge_regression_without_self() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((12, 5)) < 0.5).astype(np.float32)
    lam = 2.0
    b = EASE(lam).fit(x).b_
    for j in range(5):  # column j: ridge regression of x_j on the other items (b_jj = 0)
        others = [i for i in range(5) if i != j]
        xo = x[:, others].astype(np.float64)
        expected = np.linalg.solve(xo.T @ xo + lam * np.eye(4), xo.T @ x[:, j])
        assert b[j, j] == 0.0
        np.testing.assert_allclose(b[others, j], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(EASE(lam).fit(x).score(np.array([3])), x[[3]] @ b, rtol=1e-6)


def test_itemknn_and_popularity_on_a_toy() -> None:
    x = interaction_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 2, 1]), 3, 3)
    knn = ItemKNN().fit(x)
    np.testing.assert_allclose(knn.score(np.array([0, 2])), [[0.5, 0.5, 1 / math.sqrt(2)], [0.5, 0.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(Popularity().fit(x).score(np.array([1])), [[2.0, 2.0, 1.0]])
    with pytest.raises(NotFittedError):
        EASE().score(np.array([0]))


def test_tfidf_content_cosine() -> None:
    x = interaction_matrix(np.array([0]), np.array([0]), 1, 3)
    model = TfidfContent(["red apple", "green apple", "red car"]).fit(x)
    shared, alone = math.log(4 / 3) + 1, math.log(4 / 2) + 1  # smoothed idf: in 2 texts, in 1
    expected = math.sqrt(0.5) * shared / math.hypot(shared, alone)
    np.testing.assert_allclose(model.score(np.array([0])), [[1.0, expected, expected]], rtol=1e-5)


def test_standardize_and_the_simplex_grid() -> None:
    np.testing.assert_allclose(standardize(np.array([[1.0, 2.0, 3.0]])), [[-math.sqrt(1.5), 0.0, math.sqrt(1.5)]])
    np.testing.assert_allclose(standardize(np.array([[1.0, 2.0, 9.0]]), np.array([0, 1]))[0, :2], [-1.0, 1.0])
    grid = simplex_grid(3, 2)
    assert grid[0] == (1.0, 0.0, 0.0)
    assert sorted(grid) == sorted([(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 1.0, 0.0),
                                   (0.0, 0.5, 0.5), (0.0, 0.0, 1.0)])


class _Fixed:
    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.table[users]


def test_blend_weights_go_to_the_part_that_is_right_on_validation() -> None:
    val = [np.array([u]) for u in range(4)]  # user u's validation item is item u
    good = _Fixed(np.eye(4) + 0.01 * np.arange(4))  # ranks each user's item first
    bad = _Fixed(1 - np.eye(4))  # ranks it last
    train = by_user(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4)
    weights, grid = fit_weights({"good": good, "bad": bad}, train, val, steps=4)
    assert weights == {"good": 1.0, "bad": 0.0}  # ties go to the earlier grid point: more weight first
    by_weights = {tuple(g["weights"].values()): g["NDCG@10"] for g in grid}
    assert len(by_weights) == 5
    assert by_weights[(1.0, 0.0)] == pytest.approx(1.0)
    assert by_weights[(0.0, 1.0)] == pytest.approx(1 / math.log2(5))  # each user's item ranked 4th of 4
    blended = Blend({"bad": bad, "good": good}, weights).score(np.arange(4))
    assert blended.argmax(axis=1).tolist() == [0, 1, 2, 3]
