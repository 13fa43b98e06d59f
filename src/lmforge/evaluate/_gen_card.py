"""MODEL_CARD.md of a generative run: what the model writes, how well, against which baselines.

The sections follow the classifier's card (Mitchell et al., 2019); the evaluation section is
the model-against-baselines table, and the limitations say what a text generator adds to a
classifier's: answers that run on, answers that are fluent and wrong, and PII it can repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmforge.evaluate._card import _md
from lmforge.evaluate._summary import format_value, generation_summary_rows

__all__ = ["render_generation_card"]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return lines


def _fmt(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _limitations(metrics: dict[str, Any], source: str) -> list[str]:
    gen = metrics["generation"]
    base, nearest = metrics["baselines"]["base_model"], metrics["baselines"]["retrieval"]
    items = [
        f"Runaway answers: {1 - metrics['stop_rate']:.1%} of test answers did not end on their own within "
        f"{gen['max_new_tokens']} new tokens (greedy decoding); serve with a token limit.",
        "Fluent is not correct: ROUGE-L, chrF and BLEU measure overlap with one reference answer, not "
        "truth; check answers that matter.",
        f"Domain: fine-tuned and tested only on {source}; questions unlike the training data get answers "
        "in its style regardless.",
    ]
    if metrics["rouge_l"] <= nearest["rouge_l"]:
        items.append(
            f"Retrieval does as well: looking up the nearest training answer scores ROUGE-L "
            f"{nearest['rouge_l']:.4f} against the model's {metrics['rouge_l']:.4f}."
        )
    if metrics["rouge_l"] <= base["rouge_l"]:
        items.append(
            f"No gain over the base model: ROUGE-L {base['rouge_l']:.4f} before fine-tuning, "
            f"{metrics['rouge_l']:.4f} after."
        )
    pii = metrics["pii"]
    if pii["texts_with_pii"]:
        kinds = ", ".join(f"{kind} ({n})" for kind, n in sorted(pii["counts"].items()))
        items.append(
            f"PII in answers: {pii['texts_with_pii']} of {pii['n_texts']} generated answers hold PII ({kinds}); "
            "the model can repeat personal data from its training set. Redact outputs before showing them."
        )
    if gen["max_test"] is not None and metrics["n_test"] < gen["n_test_split"]:
        items.append(
            f"Scores are from the first {metrics['n_test']:,} of {gen['n_test_split']:,} test examples "
            "(evaluate.max_test)."
        )
    return [f"- {item}" for item in items]


def render_generation_card(*, name: str, metrics: dict[str, Any], summary: dict[str, Any],
                           system: str | None) -> str:
    """Render MODEL_CARD.md for a generative run.

    Args:
        name: Run name.
        metrics: The dict ``evaluate_generation`` writes to metrics.json.
        summary: :func:`run_summary` of the manifest.
        system: The system prompt the model was fine-tuned with (None: the chat template's default).

    Returns:
        The Markdown text.
    """
    data_rows, train_rows = generation_summary_rows(summary)
    source = format_value(summary["source"])
    blocks = [metrics, metrics["baselines"]["base_model"], metrics["baselines"]["retrieval"]]
    rows = [
        (label, *(_fmt(b[key], fmt) for b in blocks))
        for label, key, fmt in (
            ("ROUGE-L F", "rouge_l", ".4f"),
            ("chrF", "chrf", ".2f"),
            ("BLEU-4", "bleu", ".2f"),
            ("Exact match", "exact_match", ".2%"),
            ("Perplexity of the references", "perplexity", ".3f"),
            ("Stop rate", "stop_rate", ".1%"),
        )
    ]
    rows.append(("Mean length (words)", *(f"{b['mean_length']['words']:.1f}" for b in blocks)))
    system_text = f'"{_md(system)}"' if system else "none (the chat template default)"
    lines = [f"# Model card: {name}", "", "## Model details", ""]
    lines += _table(["Field", "Value"], train_rows)
    lines += [
        "",
        "A causal language model fine-tuned by lmforge to answer prompts like those of its training data.",
        f"System prompt: {system_text}.",
        "",
        "## Intended use",
        "",
        f"Drafting answers to questions like those of the training data ({source}), reviewed by a person "
        "before they reach anyone. Not intended for facts the training data does not hold, for other "
        "languages or domains without re-evaluation, nor for unreviewed answers about individuals.",
        "",
        "## Training data",
        "",
    ]
    lines += _table(["Field", "Value"], data_rows)
    lines += [
        "",
        "## Evaluation",
        "",
        f"On {metrics['n_test']:,} held-out test prompts, greedy decoding, at most "
        f"{metrics['generation']['max_new_tokens']} new tokens. The base model is the model before "
        "fine-tuning; the retrieval baseline answers with the training response of the nearest training "
        "prompt (no perplexity).",
        "",
    ]
    lines += _table(["Metric", "Fine-tuned", "Base model", "Retrieval"], rows)
    lines += ["", "## Limitations", ""]
    lines += _limitations(metrics, source)
    lines += [
        "",
        "## How to reproduce",
        "",
        "```bash",
        "lmforge run spec.yaml",
        "```",
        "",
        "`spec.yaml` is the resolved spec saved in the run directory. Full results: eval/metrics.json, "
        "eval/generations.jsonl (every answer) and eval/report.html.",
        "",
    ]
    return "\n".join(lines)
