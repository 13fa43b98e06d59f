"""Small server-side SVG charts for the dashboard and the drift report (no JavaScript, no CDN).

Every chart is an ``<svg>`` string with a ``<title>`` and ``data-*`` attributes naming what
it shows, so a page is self-contained and a test can find each chart in the DOM.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "bar_chart", "histogram_chart", "line_chart", "stacked_bar_chart", "timeline_chart"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
_W, _H = 560, 200
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 52, 12, 14, 34

Point = float | None


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v / 1000:.1f}k"
    if a >= 10:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _time_label(ts: float, span: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%m-%d %H:%M")


class _Frame:
    """Maps data to pixels and draws axes."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, width: int = _W, height: int = _H) -> None:
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1.0
        self.y0, self.y1 = y0, y1 if y1 > y0 else y0 + 1.0
        self.w, self.h = width, height

    def x(self, v: float) -> float:
        return _PAD_L + (v - self.x0) / (self.x1 - self.x0) * (self.w - _PAD_L - _PAD_R)

    def y(self, v: float) -> float:
        return self.h - _PAD_B - (v - self.y0) / (self.y1 - self.y0) * (self.h - _PAD_T - _PAD_B)

    def axes(self, y_label: str, time_axis: bool = True, x_labels: Sequence[tuple[float, str]] = ()) -> str:
        out = [
            f'<line x1="{_PAD_L}" y1="{self.h - _PAD_B}" x2="{self.w - _PAD_R}" y2="{self.h - _PAD_B}" '
            'stroke="#9ca3af"/>'
        ]
        for t in _nice_ticks(self.y0, self.y1):
            yy = self.y(t)
            out.append(
                f'<line x1="{_PAD_L}" y1="{yy:.1f}" x2="{self.w - _PAD_R}" y2="{yy:.1f}" stroke="#e5e7eb"/>'
                f'<text x="{_PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>'
            )
        if time_axis:
            span = self.x1 - self.x0
            x_labels = [(self.x0 + span * k / 4, _time_label(self.x0 + span * k / 4, span)) for k in range(5)]
        for i, (xv, text) in enumerate(x_labels):
            anchor = (
                "start"
                if time_axis and i == 0
                else "end"
                if time_axis and i == len(x_labels) - 1
                else "middle"
            )
            out.append(
                f'<text x="{self.x(xv):.1f}" y="{self.h - _PAD_B + 16}" text-anchor="{anchor}" '
                f'class="tick">{escape(text)}</text>'
            )
        out.append(
            f'<text x="12" y="{_PAD_T + (self.h - _PAD_T - _PAD_B) / 2:.0f}" class="axis" '
            f'transform="rotate(-90 12 {_PAD_T + (self.h - _PAD_T - _PAD_B) / 2:.0f})" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
        return "".join(out)


def _svg(
    kind: str,
    title: str,
    body: str,
    legend: Sequence[tuple[str, str]] = (),
    width: int = _W,
    height: int = _H,
) -> str:
    extra = 16 if legend else 0
    y = height + extra - 4
    items, x = [], float(_PAD_L)
    for name, color in legend:
        items.append(
            f'<rect x="{x:.0f}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14:.0f}" y="{y}" class="tick">{escape(name[:28])}</text>'
        )
        x += 30 + 6 * len(name[:28])
    return (
        f'<svg class="chart" data-chart="{escape(kind)}" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height + extra}" width="{width}" height="{height + extra}">'
        f"<title>{escape(title)}</title>{body}{''.join(items)}</svg>"
    )


def _empty(kind: str, title: str, message: str) -> str:
    return _svg(
        kind,
        title,
        f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="empty">{escape(message)}</text>',
    )


def line_chart(
    kind: str,
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[Point]]],
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    hline: tuple[float, str] | None = None,
) -> str:
    """Lines over time; None values break a line. ``hline`` = (value, label) draws a dashed threshold."""
    values = [v for _, ys in series for v in ys if v is not None]
    if not xs or not values:
        return _empty(kind, title, "no data in this time range")
    x0, x1 = x_range or (min(xs), max(xs))
    lo, hi = y_range or (min(0.0, min(values)), max(values) * 1.1 or 1.0)
    if hline and not y_range:
        hi = max(hi, hline[0] * 1.1)
    f = _Frame(x0, x1, lo, hi)
    body = [f.axes(y_label)]
    legend = []
    for i, (name, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        legend.append((name, color))
        seg: list[str] = []
        segments = []
        for xv, yv in zip(xs, ys, strict=True):
            if yv is None:
                if seg:
                    segments.append(seg)
                seg = []
            else:
                seg.append(f"{f.x(xv):.1f},{f.y(yv):.1f}")
        if seg:
            segments.append(seg)
        for s in segments:
            if len(s) == 1:
                cx, cy = s[0].split(",")
                body.append(
                    f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}" data-series="{escape(name)}"/>'
                )
            else:
                body.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(s)}" '
                    f'data-series="{escape(name)}"/>'
                )
    if hline:
        yy = f.y(hline[0])
        body.append(
            f'<line x1="{_PAD_L}" y1="{yy:.1f}" x2="{_W - _PAD_R}" y2="{yy:.1f}" stroke="#dc2626" '
            f'stroke-dasharray="5 4"/><text x="{_W - _PAD_R}" y="{yy - 4:.1f}" text-anchor="end" '
            f'class="tick" fill="#dc2626">{escape(hline[1])}</text>'
        )
    return _svg(kind, title, "".join(body), legend if len(series) > 1 else ())


def stacked_bar_chart(
    kind: str,
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float]]],
    x_range: tuple[float, float],
    bucket_s: float,
) -> str:
    """Shares (0..1) per time bucket stacked to 1 (the label mix over time); empty buckets stay empty."""
    if not xs or not series or not any(v for _, ys in series for v in ys):
        return _empty(kind, title, "no data in this time range")
    f = _Frame(x_range[0], x_range[1], 0.0, 1.0)
    body = [f.axes("share")]
    width = max(f.x(x_range[0] + bucket_s) - f.x(x_range[0]) - 1.0, 1.0)
    legend = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]
    for b, x in enumerate(xs):
        base = 0.0
        for (name, ys), (_, color) in zip(series, legend, strict=True):
            share = ys[b]
            if share > 0:
                top = base + share
                body.append(
                    f'<rect x="{f.x(x) - width / 2:.1f}" y="{f.y(top):.1f}" width="{width:.1f}" '
                    f'height="{f.y(base) - f.y(top):.1f}" fill="{color}" data-series="{escape(name)}">'
                    f"<title>{escape(name)}: {share:.0%}</title></rect>"
                )
                base = top
    return _svg(kind, title, "".join(body), legend)


def bar_chart(
    kind: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    y_label: str,
) -> str:
    """Grouped bars: one group per category, one bar per series."""
    values = [v for _, ys in series for v in ys]
    if not categories or not values:
        return _empty(kind, title, "no data")
    f = _Frame(0.0, float(len(categories)), 0.0, max(values) * 1.15 or 1.0)
    body = [f.axes(y_label, time_axis=False, x_labels=[(i + 0.5, c[:14]) for i, c in enumerate(categories)])]
    group = (f.x(1.0) - f.x(0.0)) * 0.8
    bar = group / max(len(series), 1)
    legend = []
    for s, (name, ys) in enumerate(series):
        color = PALETTE[s % len(PALETTE)]
        legend.append((name, color))
        for i, v in enumerate(ys):
            x = f.x(float(i)) + (f.x(1.0) - f.x(0.0)) * 0.1 + s * bar
            body.append(
                f'<rect x="{x:.1f}" y="{f.y(v):.1f}" width="{bar - 1:.1f}" height="{f.y(0) - f.y(v):.1f}" '
                f'fill="{color}" data-series="{escape(name)}" data-value="{v:.4g}"><title>{escape(name)} '
                f"{escape(categories[i])}: {v:.3g}</title></rect>"
            )
    return _svg(kind, title, "".join(body), legend)


def histogram_chart(
    kind: str, title: str, samples: Sequence[tuple[str, Sequence[float]]], x_label: str, bins: int = 20
) -> str:
    """Overlaid density histograms (step lines) of several samples on shared bins."""
    values = [float(v) for _, s in samples for v in s]
    if not values:
        return _empty(kind, title, "no data")
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + 1.0
    width = (hi - lo) / bins
    densities = []
    for _, s in samples:
        counts = [0] * bins
        for v in s:
            counts[min(int((float(v) - lo) / width), bins - 1)] += 1
        total = max(len(s), 1)
        densities.append([c / total for c in counts])
    f = _Frame(lo, hi, 0.0, max(max(d) for d in densities) * 1.15 or 1.0)
    ticks = [(lo + (hi - lo) * k / 4, _fmt(lo + (hi - lo) * k / 4)) for k in range(5)]
    body = [
        f.axes("share", time_axis=False, x_labels=ticks),
        f'<text x="{_W / 2}" y="{_H - 4}" text-anchor="middle" class="axis">{escape(x_label)}</text>',
    ]
    legend = []
    for i, ((name, _), dens) in enumerate(zip(samples, densities, strict=True)):
        color = PALETTE[i % len(PALETTE)]
        legend.append((name, color))
        pts = [f"{f.x(lo):.1f},{f.y(0):.1f}"]
        for b, d in enumerate(dens):
            pts += [
                f"{f.x(lo + b * width):.1f},{f.y(d):.1f}",
                f"{f.x(lo + (b + 1) * width):.1f},{f.y(d):.1f}",
            ]
        pts.append(f"{f.x(hi):.1f},{f.y(0):.1f}")
        body.append(
            f'<polyline fill="{color}" fill-opacity="0.15" stroke="{color}" stroke-width="2" '
            f'points="{" ".join(pts)}" data-series="{escape(name)}"/>'
        )
    return _svg(kind, title, "".join(body), legend, height=_H + 10)


def timeline_chart(
    kind: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[float, bool | None]]]],
    x_range: tuple[float, float],
) -> str:
    """One strip per detector: a cell per check, red = drift, green = none, grey = no verdict."""
    if not rows or not any(cells for _, cells in rows):
        return _empty(kind, title, "no drift checks in this time range")
    height = _PAD_T + 22 * len(rows) + _PAD_B
    pad_l = 120
    span = max(x_range[1] - x_range[0], 1e-9)
    body = []
    for r, (name, cells) in enumerate(rows):
        y = _PAD_T + 22 * r
        body.append(
            f'<text x="{pad_l - 6}" y="{y + 14}" text-anchor="end" class="tick">{escape(name)}</text>'
        )
        for ts, drift in cells:
            x = pad_l + (ts - x_range[0]) / span * (_W - pad_l - _PAD_R - 6)
            color = "#dc2626" if drift else "#16a34a" if drift is False else "#9ca3af"
            state = "drift" if drift else "ok" if drift is False else "none"
            body.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="6" height="16" fill="{color}" data-state="{state}" '
                f'data-detector="{escape(name)}"><title>{escape(name)} {_time_label(ts, span)}: '
                f"{state}</title></rect>"
            )
    for k in range(5):
        ts = x_range[0] + span * k / 4
        x = pad_l + (ts - x_range[0]) / span * (_W - pad_l - _PAD_R - 6)
        body.append(
            f'<text x="{x:.1f}" y="{height - _PAD_B + 16}" text-anchor="middle" class="tick">'
            f"{_time_label(ts, span)}</text>"
        )
    return _svg(
        kind,
        title,
        "".join(body),
        [("drift", "#dc2626"), ("no drift", "#16a34a"), ("no verdict", "#9ca3af")],
        height=height,
    )
