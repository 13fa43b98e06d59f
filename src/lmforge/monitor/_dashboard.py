"""The dashboard page: one self-contained HTML document (inline CSS and SVG; no script, no external URL).

Its header carries a "log out" button, a form posting to ``/logout``: the server's browser login
(``lmforge serve``) ends the session there; a client that sent its key in a header can ignore it.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from lmforge.monitor._svg import line_chart, stacked_bar_chart, timeline_chart

__all__ = ["PAGE_CSS", "render_dashboard"]

PAGE_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111827}
header{background:#111827;color:#f9fafb;padding:12px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0} header form{margin-left:auto} header select,header input{font-size:13px}
header form.logout{margin-left:0}
main{padding:16px 24px} .tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.tile{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0001}
.tile .v{font-size:22px;font-weight:600} .tile .k{color:#6b7280;font-size:12px;text-transform:uppercase}
.tile.bad{border-left:4px solid #dc2626} .tile.ok{border-left:4px solid #16a34a}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:16px;margin-top:16px}
.card{background:#fff;border-radius:8px;padding:12px;box-shadow:0 1px 2px #0001;overflow-x:auto}
.card h2{font-size:14px;margin:0 0 8px} svg .tick{font-size:10px;fill:#6b7280} svg .axis{font-size:11px;fill:#374151}
svg .empty{font-size:13px;fill:#9ca3af} table{border-collapse:collapse;width:100%;font-size:13px}
td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
.drift{color:#dc2626;font-weight:600} .nodrift{color:#16a34a} .none{color:#6b7280}
"""


def _num(v: Any, fmt: str = "{:.3f}", none: str = "–") -> str:
    return none if v is None else fmt.format(v)


def _time(ts: float | None) -> str:
    return "–" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _verdict(drift: bool | None) -> str:
    if drift is None:
        return '<span class="none">no verdict</span>'
    return '<span class="drift">drift</span>' if drift else '<span class="nodrift">ok</span>'


def _tiles(d: dict[str, Any]) -> str:
    h, s = d["headline"], d["summary"]
    drifted = sorted({name for mv in s["models"] if mv["drift"] for name in mv["drift"]["drifted"]})
    live = [mv["live"].get(str(min(int(w) for w in mv["live"])), {}) for mv in s["models"] if mv["live"]]
    live_acc = next((x["accuracy"] for x in live if x.get("accuracy") is not None), None)
    est = next((mv["estimated_accuracy"] for mv in s["models"] if mv["estimated_accuracy"] is not None), None)
    active = s["alerts"]["active"]
    tiles = [
        ("predictions", f"{h['predictions']:,}", "", "predictions"),
        ("throughput", f"{h['throughput_per_s']:.2f}/s", "", "throughput"),
        ("p95 latency", _num(h["latency_p95_ms"], "{:.1f} ms"), "", "latency"),
        (
            "error rate",
            _num(h["error_rate"], "{:.1%}"),
            "bad" if (h["error_rate"] or 0) > 0.01 else "",
            "errors",
        ),
        ("live accuracy", _num(live_acc, "{:.1%}"), "", "accuracy"),
        ("estimated accuracy", _num(est, "{:.1%}"), "", "estimated-accuracy"),
        ("drift", ", ".join(drifted) if drifted else "none", "bad" if drifted else "ok", "drift"),
        ("active alerts", str(len(active)), "bad" if active else "ok", "alerts"),
        (
            "queue / dropped",
            f"{s['store']['queue_depth']} / {s['store']['dropped']}",
            "bad" if s["store"]["dropped"] else "",
            "store",
        ),
    ]
    return (
        '<section class="tiles">'
        + "".join(
            f'<div class="tile {cls}" data-tile="{key}"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
            f"</div>"
            for k, v, cls, key in tiles
        )
        + "</section>"
    )


def _charts(d: dict[str, Any]) -> str:
    xr = (d["start"], d["now"])
    x = d["x"]
    unit = f"{d['bucket_s']:g}-second buckets"
    charts = [
        (
            "Throughput (predictions/s)",
            line_chart(
                "throughput", f"Throughput, {unit}", x, [("predictions/s", d["throughput"])], "per second", xr
            ),
        ),
        (
            "Latency (ms)",
            line_chart(
                "latency",
                "Latency percentiles",
                x,
                [("p50", d["latency_p50"]), ("p95", d["latency_p95"])],
                "ms",
                xr,
            ),
        ),
        (
            "Error rate",
            line_chart(
                "error-rate",
                "Errors / requests",
                x,
                [("error rate", d["error_rate"])],
                "share",
                xr,
                (0.0, max([v for v in d["error_rate"] if v is not None] + [0.05])),
            ),
        ),
        (
            "Label mix",
            stacked_bar_chart(
                "label-mix", "Share of each predicted label", x, d["label_mix"], xr, d["bucket_s"]
            ),
        ),
        (
            "Accuracy (feedback) and estimated accuracy",
            line_chart(
                "accuracy",
                "Accuracy over time",
                x,
                [("feedback accuracy", d["accuracy"]), ("estimated (label-free)", d["estimated_accuracy"])],
                "accuracy",
                xr,
                (0.0, 1.0),
            ),
        ),
        (
            "Drift checks",
            timeline_chart("drift", "Drift verdict per detector and check", d["drift_timeline"], xr),
        ),
    ]
    return (
        '<section class="grid">'
        + "".join(f'<div class="card"><h2>{escape(t)}</h2>{svg}</div>' for t, svg in charts)
        + "</section>"
    )


def _tokens(mv: dict[str, Any]) -> str:
    """A generative version's token counts and decode rate; '-' for a classifier."""
    if mv.get("completion_tokens") is None:
        return "-"
    return f"{mv['prompt_tokens'] or 0:,} / {mv['completion_tokens']:,}, {_num(mv['tokens_per_s'], '{:.1f}')}/s"


def _tables(d: dict[str, Any]) -> str:
    s = d["summary"]
    versions = "".join(
        f"<tr><td>{escape(mv['model'])}</td><td>{escape(mv['version'])}</td><td>{mv['predictions']:,}</td>"
        f"<td>{mv['feedback']:,}</td>"
        + "".join(
            f"<td>{_num(v['accuracy'], '{:.1%}')} / {_num(v['macro_f1'])} (n={v['n']})</td>"
            for v in mv["live"].values()
        )
        + f"<td>{_num(mv['estimated_accuracy'], '{:.1%}')}</td><td>{_tokens(mv)}</td></tr>"
        for mv in s["models"]
    )
    windows = "".join(
        f"<th>last {escape(w)} labeled: acc / macro-F1</th>"
        for w in (s["models"][0]["live"] if s["models"] else {})
    )
    drift_rows = ""
    for mv in s["models"]:
        if not mv["drift"]:
            continue
        for r in mv["drift"]["results"]:
            drift_rows += (
                f'<tr data-detector="{escape(r["name"])}"><td>{escape(mv["model"])} '
                f"{escape(mv['version'])}</td><td>{escape(r['name'])}</td><td>{_verdict(r['drift'])}</td>"
                f"<td>{_num(r['statistic'], '{:.4g}')}</td><td>{_num(r['p_value'], '{:.2g}')}</td>"
                f"<td>{escape(r['reason'])}</td></tr>"
            )
    alerts = "".join(
        f"<tr><td>{_time(a['ts'])}</td><td>{escape(a['status'])}</td><td>{escape(a['rule'])}</td>"
        f"<td>{_num(a['value'], '{:.4g}')}</td><td>{escape(a['model'])} {escape(a['version'])}</td></tr>"
        for a in s["alerts"]["recent"]
    )
    return (
        '<section class="grid">'
        f'<div class="card"><h2>Model versions</h2><table id="versions"><tr><th>model</th><th>version</th>'
        f"<th>predictions</th><th>feedback</th>{windows}<th>estimated accuracy</th>"
        f"<th>tokens: prompt / generated, tokens/s</th></tr>{versions}</table></div>"
        f'<div class="card"><h2>Latest drift check</h2><table id="drift-results"><tr><th>version</th><th>detector'
        f"</th><th>verdict</th><th>statistic</th><th>p</th><th>why</th></tr>"
        f"{drift_rows or '<tr><td colspan=6>no drift check yet</td></tr>'}</table></div>"
        f'<div class="card"><h2>Recent alerts</h2><table id="alerts"><tr><th>time</th><th>status</th><th>rule</th>'
        f"<th>value</th><th>version</th></tr>{alerts or '<tr><td colspan=5>none</td></tr>'}</table></div>"
        "</section>"
    )


def render_dashboard(d: dict[str, Any], refresh_s: int = 30, extra: str = "") -> str:
    """The dashboard page for :func:`~lmforge.monitor._views.dashboard_data` output; ``extra``: HTML
    sections an app adds (already escaped), after the monitor's own."""
    options = "".join(
        f'<option value="{m}"{" selected" if float(d["minutes"]) == m else ""}>last {text}</option>'
        for m, text in ((15, "15 min"), (60, "hour"), (360, "6 h"), (1440, "day"), (10080, "week"))
    )
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{escape(str(d[k]))}">' for k in ("model", "version") if d[k]
    )
    scope = " ".join(escape(str(v)) for v in (d["model"], d["version"]) if v) or "all models"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{refresh_s}"><title>lmforge monitor</title>'
        f"<style>{PAGE_CSS}</style></head><body>"
        f"<header><h1>lmforge monitor</h1><span>{scope}</span><span>updated {_time(d['now'])}</span>"
        f'<form method="get"><select name="minutes">{options}</select>{hidden} <button>show</button></form>'
        '<form method="post" action="/logout" class="logout"><button type="submit">log out</button></form></header>'
        f"<main>{_tiles(d)}{_charts(d)}{_tables(d)}{extra}</main></body></html>"
    )
