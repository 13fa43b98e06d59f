"""Confusion-matrix and reliability-diagram PNGs.

Figures are drawn on an explicit Agg canvas (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``), never through ``pyplot``: no global backend switch in the user's
process, no figure registry to leak, and it works on a headless machine.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge._extras import require

__all__ = ["plot_calibration", "plot_confusion"]

_PURPOSE = "Drawing the evaluation plots"


@contextlib.contextmanager
def _figure(width: float, height: float, **kwargs: Any) -> Iterator[Any]:
    require("matplotlib", extra="data", purpose=_PURPOSE)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with warnings.catch_warnings():
        # Labels or texts in a script the default font lacks (e.g. Chinese) render as boxes;
        # matplotlib warns once per glyph, which says nothing the picture does not.
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=r"Matplotlib currently does not support", category=UserWarning
        )
        fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _save(fig: Any, path: Path) -> None:
    # No "Software" metadata: the bytes depend only on the picture, and no URL is embedded.
    fig.savefig(path, format="png", metadata={"Software": None})


def plot_confusion(confusion: list[list[int]], labels: list[str], path: str | Path) -> Path:
    """Write the confusion matrix as an annotated heatmap (rows = true, columns = predicted).

    Args:
        confusion: (C, C) counts, rows = true class.
        labels: Class names in matrix order.
        path: PNG file to write.

    Returns:
        The path written.
    """
    path = Path(path)
    n = len(labels)
    side = min(max(4.0, 0.6 * n + 2.5), 20.0)
    # Each cell is about 0.7 * side / n inches; annotate at ~35% of its height in points.
    font = max(5.0, min(10.0, 0.7 * side / max(n, 1) * 72 * 0.35))
    # Beyond a dozen classes most cells are 0; leaving them blank keeps the errors readable.
    annotate_zeros = n <= 12
    with _figure(side + 1.0, side) as fig:
        from matplotlib.ticker import MaxNLocator  # importable now: _figure checked matplotlib

        ax = fig.add_subplot()
        image = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
        colorbar = fig.colorbar(image, ax=ax, shrink=0.8, label="examples")
        colorbar.locator = MaxNLocator(integer=True)
        colorbar.update_ticks()
        peak = max((max(row) for row in confusion), default=0)
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                if count == 0 and not annotate_zeros:
                    continue
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if peak and count > peak / 2 else "black",
                )
        ax.set_xticks(range(n), labels=labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticks(range(n), labels=labels)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title("Confusion matrix (test split)")
        _save(fig, path)
    return path


def plot_calibration(bins: list[dict[str, Any]], ece: float, path: str | Path) -> Path:
    """Write a reliability diagram: accuracy per confidence bin against the diagonal, with counts.

    Args:
        bins: Per-bin ``{"lower", "upper", "count", "accuracy", "confidence"}``.
        ece: Expected calibration error, shown in the title.
        path: PNG file to write.

    Returns:
        The path written.
    """
    path = Path(path)
    with _figure(6.0, 6.5) as fig:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        width = [b["upper"] - b["lower"] for b in bins]
        left = [b["lower"] for b in bins]
        accuracy = [b["accuracy"] or 0.0 for b in bins]
        counts = [b["count"] for b in bins]
        top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        top.bar(left, accuracy, width=width, align="edge", edgecolor="black", alpha=0.8, label="accuracy")
        shown = [b for b in bins if b["count"]]
        top.plot(
            [b["confidence"] for b in shown],
            [b["accuracy"] for b in shown],
            marker="o",
            linestyle="",
            color="darkorange",
            label="bin: (mean confidence, accuracy)",
        )
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.05)
        top.set_ylabel("accuracy")
        top.set_title(f"Reliability diagram (ECE = {ece:.3f})")
        top.legend(loc="upper left")
        bottom.bar(left, counts, width=width, align="edge", edgecolor="black", color="grey")
        peak = max(counts, default=0)
        for x, w, count in zip(left, width, counts, strict=True):
            if count:
                bottom.text(x + w / 2, count, str(count), ha="center", va="bottom", fontsize=7)
        bottom.set_ylim(0, peak * 1.3 + 1)
        bottom.set_xlabel("confidence (max probability)")
        bottom.set_ylabel("examples")
        _save(fig, path)
    return path
