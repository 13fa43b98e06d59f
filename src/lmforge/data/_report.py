"""Statistics and plots of the prepared splits (``data_report.json``, ``*.png``)."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.rundir import SPLITS

__all__ = ["class_counts", "length_stats", "plot_class_balance", "plot_text_length"]



def _summary(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    return {
        "mean": round(float(values.mean()), 2),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": int(values.max()),
    }


def length_stats(texts: list[str]) -> dict[str, dict[str, float]]:
    """Mean, median, 95th percentile and maximum length, in characters and whitespace tokens."""
    chars = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    tokens = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    return {"chars": _summary(chars), "tokens": _summary(tokens)}


def class_counts(labels: list[str], classes: list[str]) -> dict[str, int]:
    """Examples per class, in the order of ``classes`` (zeros included)."""
    counts = Counter(labels)
    return {c: counts.get(c, 0) for c in classes}


def _figure(width: float, height: float) -> Any:
    # The Agg canvas is attached explicitly instead of going through pyplot: no display is
    # needed and the process-wide backend of a host application is left alone.
    figure_mod = require("matplotlib.figure", extra="data", purpose="Plotting the data report")
    agg = require("matplotlib.backends.backend_agg", extra="data", purpose="Plotting the data report")
    fig = figure_mod.Figure(figsize=(width, height), dpi=100, layout="constrained")
    agg.FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    with warnings.catch_warnings():
        # Labels in scripts the default font lacks (e.g. Chinese) render as boxes: a cosmetic
        # flaw of a diagnostic plot, not worth one warning per missing glyph.
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        fig.savefig(path)


def plot_class_balance(counts: dict[str, dict[str, int]], classes: list[str], path: Path) -> None:
    """Horizontal bars: examples per class, one bar per split."""
    fig = _figure(8.0, min(1.5 + 0.3 * len(classes), 40.0))
    ax = fig.subplots()
    y = np.arange(len(classes))
    height = 0.8 / len(SPLITS)
    for k, split in enumerate(SPLITS):
        values = [counts.get(split, {}).get(c, 0) for c in classes]
        ax.barh(y + (k - 1) * height, values, height=height, label=split)
    ax.set_yticks(y, [str(c) for c in classes])
    ax.invert_yaxis()
    ax.set_xlabel("examples")
    ax.set_title("Class balance per split")
    ax.legend()
    _save(fig, path)


def plot_text_length(texts_by_split: dict[str, list[str]], path: Path) -> None:
    """Histograms of text length in characters and in whitespace tokens, per split."""
    fig = _figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for ax, (unit, measure) in zip(
        axes, (("characters", len), ("tokens", lambda t: len(t.split()))), strict=True
    ):
        all_values = [measure(t) for texts in texts_by_split.values() for t in texts]
        top = max(all_values, default=1)
        bins = np.linspace(0, max(top, 1), 41)
        drawn = 0
        for split in SPLITS:
            values = [measure(t) for t in texts_by_split.get(split, [])]
            if values:
                ax.hist(values, bins=bins, histtype="step", density=True, label=split)
                drawn += 1
        ax.set_xlabel(f"length ({unit})")
        ax.set_ylabel("density")
        if drawn:  # a legend without entries is a matplotlib warning
            ax.legend()
    fig.suptitle("Text length per split")
    _save(fig, path)
