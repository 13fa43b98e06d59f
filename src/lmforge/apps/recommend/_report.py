"""``DIR/eval/report.html``: every model side by side, self-contained (no script, no external asset)."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["render_report"]

_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
        "th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}th:first-child,td:first-child{text-align:left}"
        ".best{font-weight:bold;background:#eef7ee}pre{background:#f6f6f6;padding:1em;overflow:auto}")


def _table(title: str, scores: dict[str, dict[str, float]]) -> str:
    keys = [k for k in next(iter(scores.values())) if k != "users"]
    best = {k: max(v[k] for v in scores.values()) for k in keys}
    head = "".join(f"<th>{html.escape(k)}</th>" for k in [*keys, "users"])
    rows = []
    for name, v in scores.items():
        cells = "".join(f"<td class=\"{'best' if v[k] == best[k] else ''}\">{v[k]:.4f}</td>" for k in keys)
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}<td>{int(v['users'])}</td></tr>")
    return f"<h2>{html.escape(title)}</h2><table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"


def render_report(name: str, metrics: dict[str, Any]) -> str:
    """The HTML page of a recommender's ``rec_metrics.json``."""
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(name)}: recommender</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(name)}: recommender</h1>",
             f"<p>Protocol <b>{html.escape(metrics['protocol'])}</b>; ranking: {html.escape(metrics['ranking'])}. "
             f"Served model (best validation NDCG@10): <b>{html.escape(metrics['selected'])}</b>.</p>"]
    comp = metrics["comparison"]
    verdict = "beats" if comp["blend_beats_best_collaborative"] else "does not beat"
    parts.append(f"<p>On {html.escape(metrics['comparison_on'])}, the blend ({comp['blend_ndcg_at_10']:.4f}) {verdict} "
                 f"the best collaborative model, {html.escape(comp['best_collaborative'])} "
                 f"({comp['best_collaborative_ndcg_at_10']:.4f}), on NDCG@10.</p>")
    if metrics["test"]:
        parts.append(_table("Test", metrics["test"]))
    parts.append(_table("Validation (the blend weights are fitted here)", metrics["val"]))
    weights = ", ".join(f"{html.escape(k)} {v:.1f}" for k, v in metrics["blend"]["weights"].items())
    parts.append(f"<h2>Blend</h2><p>Weights of the standardized scores: {weights}.</p>")
    seconds = ", ".join(f"{html.escape(k)} {v:.1f} s" for k, v in metrics["seconds"].items())
    parts.append(f"<h2>Time</h2><p>{seconds}</p>")
    parts.append("<h2>Data</h2><pre>" + html.escape(json.dumps(metrics["data"], indent=2, ensure_ascii=False))
                 + "</pre>")
    if metrics.get("text_model"):
        parts.append("<h2>Text model</h2><pre>" + html.escape(json.dumps(metrics["text_model"], indent=2)) + "</pre>")
    parts.append("</body></html>\n")
    return "".join(parts)
