"""Generation metrics against rouge-score and sacrebleu, and against values computed by hand."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lmforge.errors import DataError
from lmforge.evaluate import (
    bleu,
    chrf,
    exact_match,
    mean_length,
    perplexity,
    rouge_l,
    rouge_l_f,
    rouge_tokens,
    stop_rate,
)

# (answer, reference): punctuation, case, numbers, placeholders, non-ASCII, empties, repeats.
PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat!"),
    ("I can't help with that, sorry.", "Sorry, I cannot help with that."),
    ("", "reference only"),
    ("hypothesis only", ""),
    ("ab", "abc"),
    (
        "To cancel order {{Order Number}}, go to 'My Orders' & click Cancel.",
        "To cancel your order {{Order Number}}, please visit My Orders and select Cancel.",
    ),
    ("Price is 3.50 dollars, call 555-1234.", "The price: 3.50 $ - call 555-1234 now"),
    ("Ünïcödé café naïve", "unicode cafe naive"),
    ("x", "x"),
    ("same same same", "same same same"),
    ("I'd be glad to help you track your refund.\nPlease share the order number.",
     "I'm here to help you track your refund. Could you share the order number, please?"),
    ("Thank you &amp; goodbye <skipped>", "Thank you & goodbye"),
    ("retrieve  the   password", "retrieve the password"),
    ("one two three four five six seven", "seven six five four three two one"),
]
ANSWERS = [a for a, _ in PAIRS]
REFERENCES = [r for _, r in PAIRS]


@pytest.mark.parametrize(("answer", "reference"), PAIRS)
def test_rouge_l_matches_rouge_score(answer: str, reference: str) -> None:
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, answer)["rougeL"].fmeasure
    assert rouge_l_f(answer, reference) == pytest.approx(expected, abs=1e-6)


def test_corpus_rouge_l_is_the_mean_of_pairs() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = sum(scorer.score(r, a)["rougeL"].fmeasure for a, r in PAIRS) / len(PAIRS)
    assert rouge_l(ANSWERS, REFERENCES) == pytest.approx(expected, abs=1e-6)


def test_rouge_l_by_hand() -> None:
    # tokens: [the, cat, sat, on, the, mat] vs [a, cat, was, sitting, on, the, mat]; LCS cat on the mat = 4
    assert rouge_tokens("The cat sat on the mat.") == ["the", "cat", "sat", "on", "the", "mat"]
    p, r = 4 / 6, 4 / 7
    assert rouge_l_f("The cat sat on the mat.", "A cat was sitting on the mat!") == pytest.approx(2 * p * r / (p + r))
    assert rouge_l_f("", "x") == 0.0
    assert rouge_l_f("a b", "c d") == 0.0
    assert rouge_l([], []) == 0.0


def test_chrf_matches_sacrebleu_corpus_and_single_pairs() -> None:
    assert chrf(ANSWERS, REFERENCES) == pytest.approx(sacrebleu.corpus_chrf(ANSWERS, [REFERENCES]).score, abs=1e-6)
    for answer, reference in PAIRS:
        expected = sacrebleu.corpus_chrf([answer], [[reference]]).score
        assert chrf([answer], [reference]) == pytest.approx(expected, abs=1e-6)


def test_chrf_by_hand() -> None:
    # "ab" vs "abc", orders 1-2 only: 1-grams P=2/2 R=2/3, 2-grams P=1/1 R=1/2 (order 3+: no answer n-grams)
    p, r = (1 + 1) / 2, (2 / 3 + 1 / 2) / 2
    assert chrf(["ab"], ["abc"]) == pytest.approx(100 * 5 * p * r / (4 * p + r))
    assert chrf(["same"], ["same"]) == pytest.approx(100.0)
    assert chrf(["xyz"], ["abc"]) == 0.0


def test_bleu_matches_sacrebleu_corpus_and_single_pairs() -> None:
    assert bleu(ANSWERS, REFERENCES) == pytest.approx(sacrebleu.corpus_bleu(ANSWERS, [REFERENCES]).score, abs=1e-6)
    for answer, reference in PAIRS:
        expected = sacrebleu.corpus_bleu([answer], [[reference]]).score
        assert bleu([answer], [reference]) == pytest.approx(expected, abs=1e-6)


def test_bleu_by_hand_with_brevity_penalty_and_smoothing() -> None:
    # answer "a b c d" vs reference "a b c d e f": all n-grams match (1..4: 4, 3, 2, 1 of 4, 3, 2, 1)
    assert bleu(["a b c d"], ["a b c d e f"]) == pytest.approx(100 * math.exp(1 - 6 / 4))
    # answer "a b x d e" vs "a b c d e": 1-grams 4/5, 2-grams 2/4, 3-grams 0/3 -> 100/(2*3), 4-grams 0/2 -> 100/(4*2)
    precisions = [80.0, 50.0, 100 / 6, 100 / 8]
    expected = math.exp(sum(math.log(p) for p in precisions) / 4)
    assert bleu(["a b x d e"], ["a b c d e"]) == pytest.approx(expected)
    assert bleu(["a b c"], ["a b c"]) == 0.0  # no 4-grams at all: sacrebleu's log 0


def test_exact_match_normalizes_whitespace_only() -> None:
    answers = ["retrieve  the \n password ", "Retrieve the password", "yes"]
    references = ["retrieve the password", "retrieve the password", "yes."]
    assert exact_match(answers, references) == pytest.approx(1 / 3)
    assert exact_match([], []) == 0.0


def test_mean_length_stop_rate_and_perplexity_by_hand() -> None:
    assert mean_length(["one two", "three"], [5, 2]) == {"tokens": 3.5, "words": 1.5}
    assert stop_rate(["stop", "length", "stop", "stop"]) == 0.75
    # two references: log p -2.0 over 2 tokens and -4.0 over 3 tokens -> exp(6 / 5)
    assert perplexity([(-2.0, 2), (-4.0, 3)]) == pytest.approx(math.exp(6 / 5))


def test_bad_inputs_raise_data_errors() -> None:
    with pytest.raises(DataError, match="2 predictions for 1 references"):
        rouge_l(["a", "b"], ["a"])
    with pytest.raises(DataError, match="at least one reference token"):
        perplexity([(0.0, 0)])
    with pytest.raises(DataError, match="above 0"):
        perplexity([(1.5, 3)])
    with pytest.raises(DataError, match="1 token counts for 2 texts"):
        mean_length(["a", "b"], [1])
