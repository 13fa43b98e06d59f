"""The self-contained HTML evaluation report.

One file, no network: inline CSS, plots embedded as base64 ``data:`` URIs, and every piece
of text from the data (test texts, label names, manifest values) HTML-escaped, since a test
set can hold anything, ``<script>`` included.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

from lmforge.evaluate._explained import explanations_html
from lmforge.evaluate._summary import baseline_rows, baseline_verdict, summary_rows

__all__ = ["CSS", "escape", "html_table", "render_report"]

# Errors shown in the report; errors.jsonl holds up to `evaluate.max_errors`.
REPORT_ERRORS = 25
# Characters of a test text shown per error row.
_TEXT_CHARS = 400

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
.muted { color: #666; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; min-width: 8rem; }
.card .value { font-size: 1.6rem; font-weight: 600; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.weak td { background: #fff1f0; }
td.diag { background: #eef6ee; font-weight: 600; }
td.text { max-width: 40rem; white-space: pre-wrap; word-break: break-word; }
img { max-width: 100%; height: auto; }
"""
CSS = _CSS
"""The report stylesheet, shared with the generative report (``_gen_report.py``)."""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = ()) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
        return f"<{tag}{cls}>{_e(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


escape = _e
html_table = _table


def _headline(metrics: dict[str, Any]) -> str:
    cards = [
        ("Accuracy", f"{metrics['accuracy']:.4f}"),
        ("Macro-F1", f"{metrics['macro_f1']:.4f}"),
        ("Weighted F1", f"{metrics['weighted_f1']:.4f}"),
        ("ECE", f"{metrics['ece']:.4f}"),
        ("Log loss", f"{metrics['log_loss']:.4f}"),
        ("Test examples", f"{metrics['n_test']:,}"),
    ]
    inner = "".join(
        f'<div class="card"><div class="muted">{_e(k)}</div><div class="value">{_e(v)}</div></div>'
        for k, v in cards
    )
    return f'<div class="cards">{inner}</div>'


def _per_class(metrics: dict[str, Any], weak: list[str]) -> str:
    rows = []
    for label, row in metrics["per_class"].items():
        cls = ' class="weak"' if label in weak else ""
        cells = [f"<td>{_e(label)}</td>"] + [
            f'<td class="num">{row[key]:.4f}</td>' for key in ("precision", "recall", "f1")
        ]
        cells.append(f'<td class="num">{row["support"]:,}</td>')
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    head = "<tr><th>Label</th>" + "".join(
        f'<th class="num">{h}</th>' for h in ("Precision", "Recall", "F1", "Support")
    )
    note = (
        f"<p>Weak classes (highlighted): {_e(', '.join(weak))}.</p>"
        if weak
        else "<p>No class stands out as weak.</p>"
    )
    return f"<table><thead>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"


def _confusion_table(confusion: list[list[int]], labels: list[str]) -> str:
    head = (
        "<tr><th>true \\ predicted</th>"
        + "".join(f'<th class="num">{_e(lab)}</th>' for lab in labels)
        + "</tr>"
    )
    rows = []
    for i, (label, row) in enumerate(zip(labels, confusion, strict=True)):
        cells = "".join(
            f'<td class="num{" diag" if i == j else ""}">{count:,}</td>' for j, count in enumerate(row)
        )
        rows.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _errors(errors: list[dict[str, Any]], total_errors: int) -> str:
    if not errors:
        return "<p>No misclassified test examples.</p>"
    shown = errors[:REPORT_ERRORS]
    rows = []
    for err in shown:
        text = err["text"] if len(err["text"]) <= _TEXT_CHARS else err["text"][:_TEXT_CHARS] + "…"
        rows.append(
            f'<tr><td class="text">{_e(text)}</td><td>{_e(err["label"])}</td>'
            f'<td>{_e(err["predicted"])}</td><td class="num">{err["confidence"]:.3f}</td></tr>'
        )
    head = '<tr><th>Text</th><th>True</th><th>Predicted</th><th class="num">Confidence</th></tr>'
    if len(shown) < total_errors:
        note = (
            f'<p class="muted">The {len(shown)} most confident of {total_errors:,} errors; '
            f"errors.jsonl holds the {len(errors):,} most confident, with every class score.</p>"
        )
    else:
        note = f'<p class="muted">All {total_errors:,} errors, most confident first.</p>'
    return f"{note}<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def render_report(
    *,
    title: str,
    metrics: dict[str, Any],
    labels: list[str],
    summary: dict[str, Any],
    errors: list[dict[str, Any]],
    by_length: list[dict[str, Any]],
    weak: list[str],
    confusion_png: bytes,
    calibration_png: bytes,
    explained: dict[str, Any] | None = None,
) -> str:
    """Render the evaluation report as one self-contained HTML page.

    Long because it is the page's template, read top to bottom in the order the page shows
    its sections; the tables and figures are built by helpers above.

    Args:
        title: Run name shown in the heading.
        metrics: The dict of :func:`lmforge.evaluate.compute_metrics`.
        labels: Class names in matrix order.
        summary: :func:`run_summary` of the manifest.
        errors: Misclassified examples, most confident first.
        by_length: :func:`error_rate_by_length` rows.
        weak: Weak class names (highlighted).
        confusion_png: PNG bytes of the confusion matrix.
        calibration_png: PNG bytes of the reliability diagram.
        explained: :func:`~lmforge.evaluate._explained.explain_sample`'s result, or None (off).

    Returns:
        The HTML text.
    """
    total_errors = sum(row["errors"] for row in by_length)
    data_rows, train_rows = summary_rows(summary)
    confused = metrics.get("most_confused") or []
    confused_html = (
        _table(
            ["True", "Predicted as", "Count"],
            [(c["true"], c["predicted"], c["count"]) for c in confused],
            numeric=[False, False, True],
        )
        if confused
        else "<p>No confusions: every test example is classified correctly.</p>"
    )
    length_html = _table(
        ["Length group", "Characters", "Examples", "Errors", "Error rate"],
        [
            (
                f"Q{r['group']}",
                f"{r['min_chars']}–{r['max_chars']}",
                r["count"],
                r["errors"],
                f"{r['error_rate']:.2%}",
            )
            for r in by_length
        ],
        numeric=[False, False, True, True, True],
    )
    calib_rows = [
        (
            f"{b['lower']:.2f}–{b['upper']:.2f}",
            b["count"],
            "–" if b["accuracy"] is None else f"{b['accuracy']:.3f}",
            "–" if b["confidence"] is None else f"{b['confidence']:.3f}",
        )
        for b in metrics["calibration"]
        if b["count"]
    ]
    sections = [
        f"<h1>Evaluation report: {_e(title)}</h1>",
        f'<p class="muted">Test split of {metrics["n_test"]:,} examples, {len(labels)} labels.</p>',
        "<h2>Headline metrics</h2>",
        _headline(metrics),
        "<h2>Baselines</h2>",
        f"<p><strong>{_e(baseline_verdict(metrics))}</strong></p>",
        _table(["", "Accuracy", "Macro-F1"], baseline_rows(metrics), numeric=(False, True, True)),
        "<h2>Per class</h2>",
        _per_class(metrics, weak),
        "<h2>Confusion matrix</h2>",
        "<p>Rows are the true label, columns the predicted label.</p>",
        _img(confusion_png, "Confusion matrix"),
        _confusion_table(metrics["confusion_matrix"], labels),
        "<h2>Calibration</h2>",
        f"<p>Expected calibration error (ECE) over {len(metrics['calibration'])} equal-width confidence bins: "
        f"<strong>{metrics['ece']:.4f}</strong>. Bars below the diagonal mean over-confidence.</p>",
        _img(calibration_png, "Reliability diagram"),
        _table(
            ["Confidence bin", "Examples", "Accuracy", "Mean confidence"],
            calib_rows,
            [False, True, True, True],
        ),
        "<h2>Error analysis</h2>",
        "<h3>Most confused pairs</h3>",
        confused_html,
        "<h3>Error rate by text length (quartiles, characters)</h3>",
        length_html,
        "<h2>Top errors</h2>",
        _errors(errors, total_errors),
        "<h2>What the model reads</h2>",
        explanations_html(explained),
        "<h2>Data</h2>",
        _table(["Field", "Value"], data_rows),
        "<h2>Training</h2>",
        _table(["Field", "Value"], train_rows),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>lmforge evaluation: {_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
