"""The live watch's page (``GET /watch``): the replay report's trend charts, from the server's timeline.

One self-contained document like the monitor dashboard: the evaluation report's stylesheet, one
inline SVG chart per topic drawn by the replay report's :func:`trend_chart` (so a live chart and a
replay chart of the same stream are the same picture), no script and no external URL; the page
reloads itself every :data:`REFRESH_S` seconds and shows what ``GET /v1/watch`` answers at that
moment (both are built from one :meth:`WatchExtension.snapshot`).
"""

from __future__ import annotations

from typing import Any

from lmforge.apps.watch._incidents import Verdict
from lmforge.apps.watch._report import trend_chart
from lmforge.evaluate import CSS, escape, html_table

__all__ = ["PAGE_HEADERS", "REFRESH_S", "render_page"]

REFRESH_S = 10
"""Seconds between the page's reloads."""
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Only the inline style; the one form (log out) posts here; no framing.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_page(view: dict[str, Any], verdicts: dict[str, list[Verdict]]) -> str:
    """The page for one snapshot: ``view`` as ``GET /v1/watch`` answers it, ``verdicts`` per topic."""
    rows = view["rows"]
    n_alerts = sum(t["alerts"] for t in view["topics"].values())
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">\n',
        f"<title>lmforge watch (live)</title>\n<style>{CSS}\n.tick {{ font-size: 10px; fill: #555; }}\n"
        "form.logout { float: right; }</style>\n</head>\n<body>\n",
        '<form method="post" action="/logout" class="logout"><button type="submit">log out</button></form>\n',
        f"<h1>Sentiment watch (live)</h1>\n<p class=\"muted\">{escape(view['source'])}: windows of "
        f"{escape(view['window'])}, detector <b>{escape(view['detector'])}</b> on {escape(view['metric'])} of "
        f"'{escape(view['negative_label'])}' (windows under {view['min_count']} texts are not judged). Newest "
        f"window: {escape(view['newest_window_start'] or 'none yet')}. Reloads every {REFRESH_S} s.</p>\n",
        '<div class="cards">'
        f'<div class="card"><div class="value" id="accepted">{rows["accepted"]}</div>texts accepted</div>'
        f'<div class="card"><div class="value" id="late">{rows["late"]}</div>late</div>'
        f'<div class="card"><div class="value" id="malformed">{rows["malformed"]}</div>malformed</div>'
        f'<div class="card"><div class="value" id="alert-count">{n_alerts}</div>alerts</div></div>\n',
        "<h2>Recent alerts</h2>\n",
        html_table(["window start", "window end", "topic", view["metric"], "baseline", "score", "n"],
                   [(a["window_start"], a["time"], a["topic"], f"{a['value']:.3f}", _share(a["baseline"]),
                     f"{a['score']:.2f}", a["n"]) for a in reversed(view["alerts"])],
                   numeric=[False, False, False, True, True, True, True])
        if view["alerts"] else "<p>No alerts.</p>",
        "<h2>Trend per topic</h2>\n",
    ]
    if not view["topics"]:
        parts.append("<p>No texts ingested yet: POST them to /v1/ingest.</p>\n")
    for topic, t in view["topics"].items():
        cell = t["open"]
        now = ("" if cell is None else f" Open window from {escape(cell['window_start'])}: {cell['n']} texts, "
               f"{cell['negative']} negative (share {cell['negative_share']:.3f}) so far.")
        parts.append(f"<h3>{escape(topic)}</h3>\n<p class=\"muted\">{len(t['windows'])} closed window(s), "
                     f"{t['alerts']} alert(s).{now}</p>\n{trend_chart(topic, verdicts.get(topic, []))}\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)
