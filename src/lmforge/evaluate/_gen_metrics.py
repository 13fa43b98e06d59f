"""Scores of generated answers against reference answers, in pure Python and NumPy.

Each overlap metric follows the definition of the library people quote it from, so a number
here reads like one in a paper: ROUGE-L F like ``rouge-score`` (lowercase, every run of
characters other than ``a-z0-9`` a separator, no stemming; the mean of per-answer F), chrF and
BLEU-4 like ``sacrebleu``'s corpus scores with its defaults (chrF: character 6-grams without
whitespace, beta 2, effective-order averaging; BLEU: the ``13a`` tokenizer, exponential
smoothing, brevity penalty). The unit tests hold them to those libraries to 1e-6; neither
library is needed at run time. ROUGE-L is on the 0-1 scale, chrF and BLEU on 0-100, as their
reference implementations print them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from lmforge.errors import DataError

__all__ = [
    "bleu",
    "chrf",
    "exact_match",
    "lcs_length",
    "mean_length",
    "normalize_whitespace",
    "perplexity",
    "rouge_l",
    "rouge_l_f",
    "rouge_tokens",
    "stop_rate",
]

_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")
# sacrebleu's 13a tokenizer (mteval-v13a, as used by WMT), language-dependent part.
_13A = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)


def _paired(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} predictions for {len(references)} references; give one for each.")


def rouge_tokens(text: str) -> list[str]:
    """``rouge-score``'s default tokens: lowercase, non-alphanumerics to spaces, split (no stemming)."""
    return _NON_ALPHANUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (one DP row at a time)."""
    if len(b) > len(a):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l_f(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure of one answer: 2PR / (P + R) over the LCS of the tokens; 0 if either is empty."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    if not pred or not ref:
        return 0.0
    lcs = lcs_length(ref, pred)
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F over answer pairs (0 for an empty corpus)."""
    _paired(predictions, references)
    if not predictions:
        return 0.0
    return sum(rouge_l_f(p, r) for p, r in zip(predictions, references, strict=True)) / len(predictions)


def _char_ngrams(text: str, order: int) -> list[Counter[str]]:
    text = "".join(text.split())
    return [Counter(text[i : i + n] for i in range(len(text) - n + 1)) for n in range(1, order + 1)]


def chrf(predictions: Sequence[str], references: Sequence[str], *, char_order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF (0-100): character n-gram precision and recall summed over the corpus, F-beta.

    Per order, hypothesis n-grams count only where the reference has n-grams of that order
    (sacrebleu's rule); precision and recall are averaged over the orders that both sides
    have, then combined with recall weighted ``beta`` times as much as precision.
    """
    _paired(predictions, references)
    hyp_total = [0] * char_order
    ref_total = [0] * char_order
    matched = [0] * char_order
    for pred, ref in zip(predictions, references, strict=True):
        for n, (h, r) in enumerate(zip(_char_ngrams(pred, char_order), _char_ngrams(ref, char_order), strict=True)):
            hyp_total[n] += sum(h.values()) if r else 0
            ref_total[n] += sum(r.values())
            matched[n] += sum(min(c, r[g]) for g, c in h.items() if g in r)
    precisions, recalls = [], []
    for n in range(char_order):
        if hyp_total[n] > 0 and ref_total[n] > 0:
            precisions.append(matched[n] / hyp_total[n])
            recalls.append(matched[n] / ref_total[n])
    if not precisions:
        return 0.0
    mean_p, mean_r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    factor = beta**2
    return 100 * (1 + factor) * mean_p * mean_r / (factor * mean_p + mean_r) if mean_p + mean_r else 0.0


def _tokenize_13a(line: str) -> list[str]:
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A:
        line = pattern.sub(repl, line)
    return line.split()


def _word_ngrams(tokens: list[str], order: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for n in range(1, order + 1) for i in range(len(tokens) - n + 1))


def bleu(predictions: Sequence[str], references: Sequence[str], *, order: int = 4) -> float:
    """Corpus BLEU-4 (0-100) with one reference per answer, as ``sacrebleu.corpus_bleu`` computes it.

    Clipped n-gram matches summed over the corpus; an order with no match gets NIST's
    exponential smoothing (1 / 2^k of a match); brevity penalty ``exp(1 - ref_len / hyp_len)``
    when the answers are shorter in total than the references.
    """
    _paired(predictions, references)
    correct, total = [0] * order, [0] * order
    hyp_len = ref_len = 0
    for pred, ref in zip(predictions, references, strict=True):
        hyp_tokens, ref_tokens = _tokenize_13a(pred), _tokenize_13a(ref)
        hyp_len += len(hyp_tokens)
        ref_len += len(ref_tokens)
        ref_grams = _word_ngrams(ref_tokens, order)
        for gram, count in _word_ngrams(hyp_tokens, order).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, ref_grams.get(gram, 0))
    if not any(correct):
        return 0.0
    penalty = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    log_sum, smooth = 0.0, 1.0
    for n in range(order):
        if total[n] == 0:
            return 0.0  # an order the answers never reach: log 0
        if correct[n] == 0:
            smooth *= 2
            precision = 100.0 / (smooth * total[n])
        else:
            precision = 100.0 * correct[n] / total[n]
        log_sum += math.log(precision)
    return penalty * math.exp(log_sum / order)


def normalize_whitespace(text: str) -> str:
    """``text`` with runs of whitespace as one space and no leading or trailing space."""
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of answers equal to their reference after whitespace normalization (0 for none)."""
    _paired(predictions, references)
    if not predictions:
        return 0.0
    same = sum(normalize_whitespace(p) == normalize_whitespace(r) for p, r in zip(predictions, references, strict=True))
    return same / len(predictions)


def mean_length(texts: Sequence[str], token_counts: Sequence[int]) -> dict[str, float]:
    """Mean answer length in model tokens and in whitespace-separated words."""
    if len(texts) != len(token_counts):
        raise DataError(f"{len(token_counts)} token counts for {len(texts)} texts; give one for each.")
    if not texts:
        return {"tokens": 0.0, "words": 0.0}
    return {
        "tokens": sum(token_counts) / len(texts),
        "words": sum(len(t.split()) for t in texts) / len(texts),
    }


def stop_rate(finish_reasons: Sequence[str]) -> float:
    """Share of answers that ended on their own (``"stop"``) rather than at ``max_new_tokens``."""
    if not finish_reasons:
        return 0.0
    return sum(reason == "stop" for reason in finish_reasons) / len(finish_reasons)


def perplexity(logliks: Sequence[tuple[float, int]]) -> float:
    """``exp(-sum log p / sum tokens)`` over ``(summed log-likelihood, token count)`` pairs.

    Raises:
        DataError: no tokens at all, or a log-likelihood above 0 (not a log-probability).
    """
    total_ll = sum(float(ll) for ll, _ in logliks)
    tokens = sum(int(n) for _, n in logliks)
    if tokens <= 0:
        raise DataError("Perplexity needs at least one reference token; every reference response is empty.")
    if any(ll > 0 for ll, _ in logliks):
        raise DataError("A log-likelihood is above 0: the model returned something other than log-probabilities.")
    return math.exp(-total_ll / tokens)
