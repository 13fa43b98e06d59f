"""The replay's outputs beside alerts.jsonl: ``timeline.csv`` and a self-contained ``report.html``.

The report is one file that works offline: the evaluation report's stylesheet, one inline SVG trend
chart per topic (the watched metric per window, alert markers, no JavaScript or CDN), and for each alert
the most negative texts of its window, PII redacted by ``lmforge.guard.redact``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.apps.watch._incidents import Verdict
from lmforge.apps.watch._time import iso
from lmforge.evaluate import CSS, escape, html_table
from lmforge.guard import redact
from lmforge.rundir import atomic_write_text

__all__ = ["TIMELINE_COLUMNS", "trend_chart", "write_report", "write_timeline"]

TIMELINE_COLUMNS = ("window_start", "window_end", "topic", "n", "negative", "negative_share", "mean_negative_score",
                    "baseline", "score", "anomalous", "alert")
"""The columns of ``timeline.csv``, one row per topic and window with texts."""

TOP_TEXTS = 5
"""Most negative texts shown per alerted window."""
_TEXT_CHARS = 300
_W, _H, _L, _R, _T, _B = 720, 220, 48, 12, 12, 30


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def write_timeline(path: Path, verdicts: dict[str, list[Verdict]]) -> Path:
    """One CSV row per topic and window (time order within each topic)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TIMELINE_COLUMNS)
    for topic, vs in verdicts.items():
        for v in vs:
            w = v.window
            writer.writerow([iso(w.start), iso(w.end), topic, w.n, w.negative, _num(w.share), _num(w.mean_score),
                             _num(v.baseline), _num(v.score), int(v.anomalous), int(v.alert)])
    atomic_write_text(path, buf.getvalue())
    return path


def _tick_format(span: float) -> str:
    return "%Y" if span > 3 * 365 * 86400 else "%Y-%m-%d" if span > 2 * 86400 else "%m-%d %H:%M"


def trend_chart(topic: str, verdicts: Sequence[Verdict]) -> str:
    """An inline SVG of one topic's watched metric per window, alerts as red dots (``data-alert``)."""
    points = [v for v in verdicts if v.window.n]
    metric = points[0].metric if points else "negative_share"
    title = f"{metric} per window: {topic}"
    if not points:
        return f'<svg class="chart" data-chart="watch-trend" data-topic="{escape(topic)}"><title>{escape(title)}</title></svg>'
    x0, x1 = points[0].window.start, max(points[-1].window.start, points[0].window.start + 1)

    def x(ts: float) -> float:
        return _L + (ts - x0) / (x1 - x0) * (_W - _L - _R)

    top = 1.0 if metric != "negative_count" else max(1.0, max(v.window.value(metric) for v in points))

    def y(value: float) -> float:
        return _H - _B - value / top * (_H - _T - _B)

    body = [f'<line x1="{_L}" y1="{_H - _B}" x2="{_W - _R}" y2="{_H - _B}" stroke="#9ca3af"/>']
    for tick in (top * k / 4 for k in range(5)):
        body.append(f'<line x1="{_L}" y1="{y(tick):.1f}" x2="{_W - _R}" y2="{y(tick):.1f}" stroke="#e5e7eb"/>'
                    f'<text x="{_L - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">{tick:.3g}</text>')
    fmt = _tick_format(x1 - x0)
    for k in range(5):
        ts = x0 + (x1 - x0) * k / 4
        label = dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)
        body.append(f'<text x="{x(ts):.1f}" y="{_H - _B + 16}" text-anchor="middle" class="tick">{label}</text>')
    line = " ".join(f"{x(v.window.start):.1f},{y(v.window.value(metric)):.1f}" for v in points)
    body.append(f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{line}"/>')
    for v in points:
        if v.alert or v.suppressed:
            state = "alert" if v.alert else "suppressed"
            color = "#dc2626" if v.alert else "#d97706"
            body.append(
                f'<circle cx="{x(v.window.start):.1f}" cy="{y(v.window.value(metric)):.1f}" r="4" fill="{color}" '
                f'data-alert="{state}" data-window="{iso(v.window.start)}"><title>{state} {iso(v.window.start)}: '
                f"{metric} {v.window.value(metric):.3g} over {v.window.n} texts</title></circle>")
    return (f'<svg class="chart" data-chart="watch-trend" data-topic="{escape(topic)}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}">'
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def _top_texts(verdict: Verdict, view: dict[str, Any]) -> list[tuple[float, str]]:
    rows = [i for i in verdict.window.rows if view["negative"][i]]
    rows.sort(key=lambda i: -float(view["negative_proba"][i]))
    out = []
    for i in rows[:TOP_TEXTS]:
        text = redact(view["texts"][i]).text
        out.append((float(view["negative_proba"][i]), text[:_TEXT_CHARS]))
    return out


def write_report(path: Path, view: dict[str, Any]) -> Path:
    """The self-contained HTML report of a replay (``view``: see ``_replay.result_view``)."""
    s = view["summary"]
    parts = [
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<title>lmforge watch: {escape(view['source'])}</title>\n<style>{CSS}\n.tick {{ font-size: 10px; fill: #555; }}"
        "</style>\n</head>\n<body>\n",
        f"<h1>Sentiment watch</h1>\n<p class=\"muted\">{escape(view['source'])}: {s['texts']} texts "
        f"({s['skipped']} skipped), {s['topics']} topic(s), windows of {escape(view['window'])}, detector "
        f"<b>{escape(view['detector'])}</b> on {escape(view['metric'])} of '{escape(view['negative_label'])}' "
        f"(windows under {view['min_count']} texts are not judged).</p>\n",
        f"<div class=\"cards\"><div class=\"card\"><div class=\"value\" id=\"alert-count\">{s['alerts']}</div>alerts"
        f"</div><div class=\"card\"><div class=\"value\">{s['windows']}</div>windows</div>"
        f"<div class=\"card\"><div class=\"value\">{s['texts_per_s']:g}</div>texts/s scored</div></div>\n",
        "<h2>Alerts</h2>\n",
        html_table(["window start", "window end", "topic", view["metric"], "baseline", "score", "n"],
                   [(a["window_start"], a["time"], a["topic"], f"{a['value']:.3f}",
                     "" if a["baseline"] is None else f"{a['baseline']:.3f}", f"{a['score']:.2f}", a["n"])
                    for a in view["alerts"]], numeric=[False, False, False, True, True, True, True])
        if view["alerts"] else "<p>No alerts.</p>",
        "<h2>Trend per topic</h2>\n",
    ]
    for topic, verdicts in view["verdicts"].items():
        parts.append(f"<h3>{escape(topic)}</h3>\n{trend_chart(topic, verdicts)}\n")
    parts.append("<h2>Most negative texts of each alerted window</h2>\n")
    for topic, verdicts in view["verdicts"].items():
        for v in verdicts:
            if not v.alert:
                continue
            parts.append(f"<h3 class=\"alert-window\">{escape(topic)}: {iso(v.window.start)} .. {iso(v.window.end)}"
                         "</h3>\n")
            parts.append(html_table(["P(negative)", "text (PII redacted)"],
                                    [(f"{p:.3f}", t) for p, t in _top_texts(v, view)], numeric=[True, False]))
    parts.append("\n</body>\n</html>\n")
    atomic_write_text(path, "".join(parts))
    return path
