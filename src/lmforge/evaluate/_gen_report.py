"""The self-contained HTML report of a generative run: model against baselines, answers side by side.

Same rules as the classifier's report (``_report.py``): one file, inline CSS, no network, and
every piece of text from the data or a model HTML-escaped, because a generated answer can hold
anything, ``<script>`` included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmforge.evaluate._report import CSS, escape, html_table
from lmforge.evaluate._summary import generation_summary_rows

__all__ = ["REPORT_SAMPLES", "render_generation_report"]

REPORT_SAMPLES = 40
"""Examples shown side by side in the report; eval/generations.jsonl holds every one."""
# Characters of a prompt or answer shown per cell.
_CELL_CHARS = 600
_COLUMNS = (("model", "Fine-tuned"), ("base_model", "Base model"), ("retrieval", "Retrieval"))


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    blocks = [metrics, metrics["baselines"]["base_model"], metrics["baselines"]["retrieval"]]
    rows = [
        ("ROUGE-L F (0–1)", "rouge_l", ".4f"),
        ("chrF (0–100)", "chrf", ".2f"),
        ("BLEU-4 (0–100)", "bleu", ".2f"),
        ("Exact match", "exact_match", ".2%"),
        ("Perplexity of the references", "perplexity", ".3f"),
        ("Stop rate (ended before max_new_tokens)", "stop_rate", ".1%"),
    ]
    out = [[name] + [_num(b[key], fmt) for b in blocks] for name, key, fmt in rows]
    out.append(["Mean length (tokens)"] + [f"{b['mean_length']['tokens']:.1f}" for b in blocks])
    out.append(["Mean length (words)"] + [f"{b['mean_length']['words']:.1f}" for b in blocks])
    out.append(["Answers with PII"] + [f"{b['pii']['texts_with_pii']:,}" for b in blocks])
    return out


def _pii(metrics: dict[str, Any]) -> str:
    counts = metrics["pii"]["counts"]
    if not counts:
        return "<p>No PII found in the fine-tuned model's answers.</p>"
    return (
        f"<p>{metrics['pii']['texts_with_pii']:,} of {metrics['pii']['n_texts']:,} answers hold PII "
        "(counted by kind, values never shown):</p>"
        + html_table(["Kind", "Found"], sorted(counts.items()), [False, True])
    )


def _cut(text: str) -> str:
    return text if len(text) <= _CELL_CHARS else text[:_CELL_CHARS] + "…"


def _samples(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No test examples.</p>"
    shown = rows[:REPORT_SAMPLES]
    body = []
    for row in shown:
        cut = ' <span class="muted">(cut at max_new_tokens)</span>' if row["finish_reason"] == "length" else ""
        body.append(
            f'<tr><td class="text">{escape(_cut(row["prompt"]))}</td>'
            f'<td class="text">{escape(_cut(row["reference"]))}</td>'
            f'<td class="text">{escape(_cut(row["generated"]))}{cut}</td>'
            f'<td class="text">{escape(_cut(row["base_model"]))}</td>'
            f'<td class="text">{escape(_cut(row["retrieval"]))}</td></tr>'
        )
    head = "<tr><th>Prompt</th><th>Reference</th><th>Fine-tuned</th><th>Base model</th><th>Retrieval</th></tr>"
    note = (
        f'<p class="muted">The first {len(shown)} of {len(rows):,} test examples; eval/generations.jsonl holds all.</p>'
        if len(shown) < len(rows)
        else f'<p class="muted">All {len(rows):,} test examples.</p>'
    )
    return f'{note}<table class="samples"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def render_generation_report(*, title: str, metrics: dict[str, Any], summary: dict[str, Any],
                             rows: Sequence[dict[str, Any]]) -> str:
    """Render the generative evaluation report as one self-contained HTML page.

    Args:
        title: Run name shown in the heading.
        metrics: The dict ``evaluate_generation`` writes to metrics.json.
        summary: :func:`run_summary` of the manifest.
        rows: ``{prompt, reference, generated, finish_reason, base_model, retrieval}`` per test example.

    Returns:
        The HTML text.
    """
    data_rows, train_rows = generation_summary_rows(summary)
    gen = metrics["generation"]
    sections = [
        f"<h1>Evaluation report: {escape(title)}</h1>",
        f'<p class="muted">Generative run: {metrics["n_test"]:,} test prompts (of {gen["n_test_split"]:,} in the '
        f"test split), greedy decoding, at most {gen['max_new_tokens']} new tokens per answer.</p>",
        "<h2>Model and baselines</h2>",
        "<p>The base model is the model before fine-tuning, asked the same prompts with the same system prompt; "
        "the retrieval baseline answers with the training response of the most similar training prompt "
        "(TF-IDF cosine), so it has no perplexity and always stops.</p>",
        html_table(["Metric", *(name for _, name in _COLUMNS)], _metric_rows(metrics), [False, True, True, True]),
        "<h2>PII in generated answers</h2>",
        _pii(metrics),
        "<h2>Answers side by side</h2>",
        _samples(rows),
        "<h2>Data</h2>",
        html_table(["Field", "Value"], data_rows),
        "<h2>Training</h2>",
        html_table(["Field", "Value"], train_rows),
    ]
    body = "\n".join(sections)
    css = CSS + "table.samples td.text { max-width: 22rem; }\n"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>lmforge evaluation: {escape(title)}</title>\n<style>{css}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
