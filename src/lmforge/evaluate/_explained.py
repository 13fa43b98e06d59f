"""What the model reads: explanations of a seeded sample of test predictions, for the report.

:func:`explain_sample` explains up to ``evaluate.explain_examples`` test texts with
:func:`lmforge.predict.explain` (integrated gradients on a torch model, occlusion otherwise):
the seeded sample, plus up to :data:`EXPLAINED_ERRORS` of the most confident errors. Per
predicted class it counts the *decisive* words (the top-attributed word of each explained text,
lowercased, punctuation stripped) and keeps their mean attribution; the errors are kept whole,
so the report can show which words misled the model. Written to ``eval/explanations.json`` and
shown in ``report.html``.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

import numpy as np

from lmforge.predict import explain

__all__ = ["EXPLAINED_ERRORS", "explain_sample", "explanations_html"]

EXPLAINED_ERRORS = 3
"""Misclassified test texts explained whole in the report (the most confident errors)."""

_PUNCT = "\"'“”‘’.,;:!?()[]{}<>«»…-–—*_/\\|@#"


def explain_sample(predictor: Any, texts: list[str], y_true: np.ndarray, proba: np.ndarray, labels: list[str], *,
                   n: int, steps: int, seed: int) -> dict[str, Any] | None:
    """Explanations of ``n`` seeded test texts and the most confident errors.

    None when ``n`` is 0, or for a predictor that is not one of :mod:`lmforge.predict`'s backends
    (one that only answers probabilities for the texts it is asked about).
    """
    if n <= 0 or not texts or getattr(predictor, "backend", None) is None:
        return None
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(len(texts), size=min(n, len(texts)), replace=False).tolist())
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    errors = [int(i) for i in wrong[np.argsort(-proba[wrong].max(axis=1), kind="stable")][:EXPLAINED_ERRORS]]
    chosen = sorted(set(sample) | set(errors))
    explained = dict(zip(chosen, explain(predictor, [texts[i] for i in chosen], steps=steps), strict=True))
    decisive: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i in sample:
        e = explained[i]
        top = next((w for w in e.top(len(e.words)) if w.word.strip(_PUNCT)), None)
        if top is not None and top.weight > 0:
            decisive[e.label][top.word.strip(_PUNCT).casefold()].append(top.weight)
    per_class = {
        label: [{"word": w, "count": len(v), "mean_attribution": round(float(np.mean(v)), 6)}
                for w, v in sorted(words.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:8]]
        for label, words in sorted(decisive.items())
    }
    return {
        "method": explained[chosen[0]].method,
        "n": len(sample),
        "steps": steps,
        "decisive_words": per_class,
        "errors": [_error(texts[i], labels[int(y_true[i])], explained[i].to_dict(top=5)) for i in errors],
    }


def _error(text: str, true_label: str, explanation: dict[str, Any]) -> dict[str, Any]:
    return {"text": text, "true_label": true_label, "predicted": explanation["label"], "score": explanation["score"],
            "tokens": explanation["tokens"]}


def explanations_html(explained: dict[str, Any] | None) -> str:
    """The report's section body: decisive words per class, then the explained errors."""
    if explained is None:
        return '<p class="muted">No explanations (evaluate.explain_examples: 0).</p>'
    e = html.escape
    parts = [f'<p class="muted">{explained["n"]} seeded test texts explained by {e(explained["method"])}; a word is '
             "decisive for a text when it pushed hardest toward the predicted label.</p>"]
    rows = "".join(
        f"<tr><td>{e(label)}</td><td>"
        + ", ".join(f"{e(w['word'])} ({w['count']})" for w in words)
        + "</td></tr>"
        for label, words in explained["decisive_words"].items()
    )
    parts.append("<h3>Decisive words per predicted class</h3>"
                 f"<table><thead><tr><th>Predicted</th><th>Words (texts)</th></tr></thead><tbody>{rows}</tbody></table>"
                 if rows else "<p>No word pushed toward a label in the sample.</p>")
    if explained["errors"]:
        items = "".join(
            f'<tr><td class="text">{e(err["text"])}</td><td>{e(err["true_label"])}</td><td>{e(err["predicted"])}</td>'
            "<td>" + ", ".join(f"{e(t['token'])} ({t['attribution']:+.3f})" for t in err["tokens"]) + "</td></tr>"
            for err in explained["errors"]
        )
        parts.append("<h3>Explained errors</h3><table><thead><tr><th>Text</th><th>True</th><th>Predicted</th>"
                     f"<th>Words that pushed toward the prediction</th></tr></thead><tbody>{items}</tbody></table>")
    return "\n".join(parts)

