"""MODEL_CARD.md: what the model is, what it was trained and tested on, and where it fails.

Follows the sections of Mitchell et al., "Model Cards for Model Reporting" (2019), filled
from the manifest and the test metrics; every fact the run did not record reads "unknown".
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lmforge.evaluate._summary import UNKNOWN, baseline_rows, baseline_verdict, format_value, summary_rows

__all__ = ["dominant_script", "render_model_card"]

# Prefixes of Unicode character names, checked in order; the rest count as "other".
_SCRIPTS = (
    "LATIN",
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "HANGUL",
    "CYRILLIC",
    "ARABIC",
    "GREEK",
    "HEBREW",
    "DEVANAGARI",
    "THAI",
)
_SCRIPT_NAMES = {"CJK": "Chinese (CJK)", "HIRAGANA": "Japanese kana", "KATAKANA": "Japanese kana"}


def _md(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _script(char: str) -> str | None:
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    for script in _SCRIPTS:
        if name.startswith(script):
            return _SCRIPT_NAMES.get(script, script.title())
    return "other"


def dominant_script(texts: Sequence[str], sample: int = 2000) -> tuple[str, float]:
    """The writing system most letters of the texts are in, and its share of letters.

    A cheap stand-in for language identification (no model, no download): it tells a
    Latin-script model from a Chinese one, not English from French.
    """
    counts: Counter[str] = Counter()
    for text in texts[:sample]:
        counts.update(s for s in map(_script, text) if s)
    if not counts:
        return UNKNOWN, 0.0
    script, n = counts.most_common(1)[0]
    return script, n / sum(counts.values())


def _rough_tokens(text: str) -> int:
    # Whitespace words plus CJK characters (each is about one token): a lower bound on
    # the subword count, so the truncation figure below is an underestimate.
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3040" <= ch <= "\u30ff")
    return len(text.split()) + cjk


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return lines


def render_model_card(
    *,
    name: str,
    metrics: dict[str, Any],
    summary: dict[str, Any],
    weak: list[str],
    texts: Sequence[str],
    max_length: int | None,
) -> str:
    """Render MODEL_CARD.md.

    Long because it is the card's template, read top to bottom in the order the card shows
    its sections; what is computed (limitations, summary rows, scripts) lives in helpers above.

    Args:
        name: Run name.
        metrics: The dict of :func:`lmforge.evaluate.compute_metrics`.
        summary: :func:`run_summary` of the manifest.
        weak: Weak class names, weakest first.
        texts: The test texts (for the script and truncation estimates).
        max_length: Token limit of the model inputs, if known.

    Returns:
        The Markdown text.
    """
    data_rows, train_rows = summary_rows(summary)
    per_class = metrics["per_class"]
    labels = list(per_class)
    script, share = dominant_script(texts)
    source = format_value(summary["source"])

    lines = [f"# Model card: {name}", ""]
    lines += ["## Model details", ""]
    lines += _table(["Field", "Value"], train_rows)
    lines += [
        "",
        f"A text classifier fine-tuned by lmforge to assign one of {len(labels)} labels "
        f"({', '.join(labels)}) to a text.",
        "",
        "## Intended use",
        "",
        f"Classifying texts like those of the training data ({source}) into the labels above, "
        "for analysis or triage with a person in the loop for decisions that matter. "
        "Not intended for texts of another language or domain without re-evaluation on them, "
        "nor for decisions about individuals made by the model alone.",
        "",
        "## Training data",
        "",
    ]
    lines += _table(["Field", "Value"], data_rows)
    lines += ["", "## Evaluation", "", f"On the held-out test split ({metrics['n_test']:,} examples):", ""]
    lines += _table(
        ["Metric", "Value"],
        [
            ("Accuracy", f"{metrics['accuracy']:.4f}"),
            ("Macro-F1", f"{metrics['macro_f1']:.4f}"),
            ("Weighted F1", f"{metrics['weighted_f1']:.4f}"),
            ("Log loss", f"{metrics['log_loss']:.4f}"),
            ("Expected calibration error", f"{metrics['ece']:.4f}"),
        ],
    )
    lines += ["", "Against baselines that never read the text (fitted on the training labels):", ""]
    lines += _table(["Model", "Accuracy", "Macro-F1"], baseline_rows(metrics))
    lines += ["", baseline_verdict(metrics)]
    lines += ["", "Per class:", ""]
    lines += _table(
        ["Label", "Precision", "Recall", "F1", "Support"],
        [
            (label, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", f"{r['support']:,}")
            for label, r in per_class.items()
        ],
    )
    mean_conf = _mean_confidence(metrics)
    direction = "over" if mean_conf > metrics["accuracy"] else "under"
    lines += [
        "",
        "## Calibration",
        "",
        f"Expected calibration error (ECE) over {len(metrics['calibration'])} equal-width confidence bins: "
        f"**{metrics['ece']:.4f}** (0 is perfectly calibrated). Accuracy {metrics['accuracy']:.4f} against "
        f"a mean confidence of {mean_conf:.4f}: the model is {direction}-confident on average. "
        "See eval/calibration.png for the reliability diagram.",
        "",
        "## Limitations",
        "",
    ]
    lines += _limitations(metrics, weak, texts, script, share, source, max_length)
    lines += [
        "",
        "## How to reproduce",
        "",
        "```bash",
        "lmforge run spec.yaml",
        "```",
        "",
        "`spec.yaml` is the resolved spec saved in the run directory; the data fingerprint above "
        "identifies the exact prepared data. Full results: eval/metrics.json and eval/report.html.",
        "",
    ]
    return "\n".join(lines)


def _mean_confidence(metrics: dict[str, Any]) -> float:
    bins = [b for b in metrics["calibration"] if b["count"]]
    total = sum(b["count"] for b in bins)
    return sum(b["confidence"] * b["count"] for b in bins) / total if total else 0.0


def _limitations(
    metrics: dict[str, Any],
    weak: list[str],
    texts: Sequence[str],
    script: str,
    share: float,
    source: str,
    max_length: int | None,
) -> list[str]:
    per_class = metrics["per_class"]
    items = []
    if script != UNKNOWN:
        items.append(
            f"Language: {share:.0%} of the letters in the test texts are {script} script; "
            "performance on text in other languages or scripts was not measured."
        )
    items.append(
        f"Domain: trained and tested only on {source}; expect lower accuracy on text from other "
        "sources, periods or registers."
    )
    if weak:
        items.append(
            "Weak classes: "
            + ", ".join(f"{_md(w)} (F1 {per_class[w]['f1']:.2f})" for w in weak)
            + ". Predictions for these labels are the least reliable."
        )
    else:
        worst = min(per_class, key=lambda k: per_class[k]["f1"])
        items.append(f"Weakest class: {_md(worst)} (F1 {per_class[worst]['f1']:.2f}).")
    unseen = [label for label, row in per_class.items() if row["support"] == 0]
    if unseen:
        items.append(f"Not evaluated: {', '.join(map(_md, unseen))} had no test examples.")
    small = [label for label, row in per_class.items() if 0 < row["support"] < 30]
    if small:
        items.append(f"Few test examples (< 30) for {', '.join(map(_md, small))}: their scores are noisy.")
    if max_length:
        over = sum(1 for t in texts if _rough_tokens(t) > max_length)
        seen = (
            f"at least {over:,} of {len(texts):,} test texts ({over / len(texts):.1%}) are that long."
            if over
            else "few if any test texts are that long."
        )
        items.append(
            f"Texts longer than {max_length} tokens are truncated, so the end of a long text is not seen; {seen}"
        )
    else:
        items.append("Texts longer than the model's maximum input length are truncated.")
    items.append(
        "The scores are from one test split of the same distribution as the training data; "
        "they are an upper bound for data that drifts away from it."
    )
    return [f"- {item}" for item in items]
