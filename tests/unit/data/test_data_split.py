"""Stratified sampling and splitting."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lmforge.data import stratified_sample, stratified_split
from lmforge.data._split import allocate
from lmforge.errors import DataError

LABELS = ["neg"] * 600 + ["neu"] * 250 + ["pos"] * 147 + ["rare"] * 3


def test_allocate_sums_and_respects_caps():
    counts = np.array([600, 250, 147, 3])
    share = allocate(counts, 100, counts - 1)
    assert share.sum() == 100
    assert share.tolist() == [60, 25, 15, 0]
    capped = allocate(np.array([10, 10]), 15, np.array([2, 20]))
    assert capped.tolist() == [2, 13]
    assert allocate(np.array([1, 1]), 5, np.array([0, 0])).tolist() == [0, 0]


def test_split_sizes_and_disjoint():
    train, val, test = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    everything = np.concatenate([train, val, test])
    assert sorted(everything.tolist()) == list(range(len(LABELS)))


def test_split_keeps_class_proportions():
    train, val, test = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=0)
    overall = Counter(LABELS)
    for part in (train, val, test):
        counts = Counter(LABELS[i] for i in part)
        for label in ("neg", "neu", "pos"):
            assert counts[label] / len(part) == pytest.approx(overall[label] / len(LABELS), abs=0.01)


def test_every_label_in_train_even_when_tiny():
    labels = ["a", "a", "b", "b", "c", "c", "c"]
    train, _, _ = stratified_split(labels, val_fraction=0.4, test_fraction=0.4, seed=3)
    assert {labels[i] for i in train} == {"a", "b", "c"}


def test_split_deterministic_for_a_seed_and_differs_across_seeds():
    a = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.1, seed=7)
    b = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.1, seed=7)
    c = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.1, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.sort(a[2]), np.sort(c[2]))


def test_split_is_shuffled_not_grouped_by_label():
    train, _, _ = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.1, seed=0)
    first = [LABELS[i] for i in train[:50]]
    assert len(set(first)) > 1


def test_zero_fractions_put_everything_in_train():
    train, val, test = stratified_split(LABELS, val_fraction=0.0, test_fraction=0.0, seed=0)
    assert len(train) == len(LABELS) and len(val) == 0 and len(test) == 0


def test_stratified_sample_keeps_rare_classes_and_proportions():
    rows = stratified_sample(LABELS, 200, seed=1, min_per_class=3)
    counts = Counter(LABELS[i] for i in rows)
    assert len(rows) == 200
    assert counts["rare"] == 3
    assert counts["neg"] == pytest.approx(0.6 * 197, abs=2)
    assert np.array_equal(rows, np.sort(rows))
    assert np.array_equal(rows, stratified_sample(LABELS, 200, seed=1, min_per_class=3))
    assert not np.array_equal(rows, stratified_sample(LABELS, 200, seed=2, min_per_class=3))


def test_stratified_sample_too_small_is_an_error():
    with pytest.raises(DataError, match="data.max_examples=5"):
        stratified_sample(LABELS, 5, seed=1, min_per_class=3)
