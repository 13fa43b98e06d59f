"""The retrieval baseline finds the nearest training prompt on a hand-made set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmforge.errors import DataError, NotFittedError
from lmforge.evaluate import NearestPrompt

TRAIN_PROMPTS = [
    "How do I cancel my order?",
    "I want to track my refund",
    "Reset my account password please",
    "What are your opening hours?",
]
TRAIN_RESPONSES = ["cancel-answer", "refund-answer", "password-answer", "hours-answer"]


def test_picks_the_nearest_training_prompt() -> None:
    index = NearestPrompt().fit(TRAIN_PROMPTS, TRAIN_RESPONSES)
    tests = [
        "cancel the order I made",  # shares "cancel", "order"
        "where is my refund??",  # "refund"
        "i forgot my pasword",  # misspelt: character 3-grams of "pasword" still meet "password"
        "When are you open",  # "open" shares 3-grams with "opening"
    ]
    assert index.nearest(tests) == [0, 1, 2, 3]
    assert index.answer(tests) == ["cancel-answer", "refund-answer", "password-answer", "hours-answer"]


def test_similarity_is_tfidf_cosine_computed_by_hand() -> None:
    # Two one-word prompts: features of "ab" are w:ab, " ab", "ab "; of "cd" w:cd, " cd", "cd ".
    # Every term has df 1 of n=2, so every idf is ln(3/2)+1 and each vector is uniform over 3 terms.
    index = NearestPrompt().fit(["ab", "cd"], ["x", "y"])
    # Query "ab ab": the same three terms twice -> the same direction as "ab": cosine 1.
    assert index.similarities("ab ab") == pytest.approx(np.array([1.0, 0.0]))
    # Query "ab zz": known terms w:ab, " ab", "ab " (zz's terms are unknown and dropped) -> cosine 1 with "ab".
    assert index.similarities("ab zz") == pytest.approx(np.array([1.0, 0.0]))
    # Query "abcd": terms w:abcd (unknown), " ab" (known), "abc", "bcd" (unknown), "cd " (known):
    # one shared term with each prompt, each prompt's vector has 3 equal weights -> cosine (1/sqrt(2)) * (1/sqrt(3)).
    expected = 1 / math.sqrt(2) / math.sqrt(3)
    assert index.similarities("abcd") == pytest.approx(np.array([expected, expected]))


def test_ties_and_no_overlap_go_to_the_first_prompt() -> None:
    index = NearestPrompt().fit(["same words", "same words"], ["first", "second"])
    assert index.answer(["same words"]) == ["first"]
    assert index.answer(["qqq"]) == ["first"]  # nothing shared: every similarity 0


def test_contract_errors() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        NearestPrompt().answer(["x"])
    with pytest.raises(DataError, match="train split is empty"):
        NearestPrompt().fit([], [])
    with pytest.raises(DataError, match="2 training prompts for 1 responses"):
        NearestPrompt().fit(["a", "b"], ["x"])
