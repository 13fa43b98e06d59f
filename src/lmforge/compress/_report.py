"""``compressed/compression_report.md`` and ``compressed/tradeoff.png`` (latency vs accuracy, size as area)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from lmforge._extras import require

__all__ = ["plot_tradeoff", "render_report"]


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def render_report(baseline: dict[str, Any], variants: dict[str, dict[str, Any]], selection: dict[str, Any],
                  skipped: dict[str, str], options: dict[str, Any]) -> str:
    """The Markdown report: one row per variant, the selection and its reason, how it was measured."""
    base_size = baseline["size_bytes"]
    lat = baseline["latency"]
    rows = [
        "| variant | format | size MB (x fp32) | batch 1 ms | batch 32 ms | speed-up b1 / b32 | accuracy "
        "| Δ points | macro-F1 | agreement | selected |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, rec: dict[str, Any], fmt: str) -> str:
        lt = rec["latency"]
        drop = (baseline["accuracy"] - rec["accuracy"]) * 100
        delta = "0.00" if abs(drop) < 0.005 else f"{-drop:+.2f}"
        mark = "**yes**" if selection["variant"] == name else ""
        return (
            f"| {name} | {fmt} | {_mb(rec['size_bytes'])} ({rec['size_bytes'] / base_size:.2f}) "
            f"| {lt['batch_1_ms']:.2f} | {lt['batch_32_ms']:.1f} "
            f"| {lat['batch_1_ms'] / lt['batch_1_ms']:.2f}x / {lat['batch_32_ms'] / lt['batch_32_ms']:.2f}x "
            f"| {rec['accuracy']:.4f} | {delta} | {rec['macro_f1']:.4f} | {rec['agreement_with_fp32']:.4f} "
            f"| {mark} |"
        )

    rows.append(row("fp32", baseline, "torch (model/)"))
    for name, rec in variants.items():
        rows.append(row(name, rec, rec.get("format", "?")))
    measured = baseline["measured"]
    lines = [
        "# Compression report",
        "",
        f"**Selected: `{selection['variant']}`** — {selection['reason']}.",
        "",
        f"Budget: {selection['budget']:g} accuracy point(s) below fp32 ({baseline['accuracy']:.4f}); "
        f"fastest by {selection['speed_by'].replace('_', ' ')} latency.",
        "",
        *rows,
        "",
        "## Why each variant was or was not selected",
        "",
        *[f"- `{c['name']}`: {c['why']}" for c in selection["considered"]],
    ]
    if skipped:
        lines += ["", "## Skipped", "", *[f"- `{name}`: {why}" for name, why in skipped.items()]]
    lines += [
        "",
        "## How this was measured",
        "",
        f"- Accuracy, macro-F1 and agreement (same predicted label as fp32) on the run's test split "
        f"({baseline['n_test']} texts).",
        f"- Latency: {measured['what']}; {measured['warmup']} warm-up runs, then the {measured['statistic']} "
        f"of {measured['repeats']} timed runs per batch size; texts that pad to {measured['seq_len']} tokens "
        f"({measured['seq_len_rule']}); each backend's default threads ({measured['threads']} here). "
        f"Measured {measured['date']} on this machine; every variant in `<variant>/variant.json`.",
        "- Size: bytes of the weight files (model.onnx or model.safetensors; for fp32 model/*.safetensors).",
        f"- Options: `{ {k: v for k, v in options.items() if v is not None} }`",
        "",
        "![latency vs accuracy](tradeoff.png)",
        "",
    ]
    return "\n".join(lines)


def plot_tradeoff(baseline: dict[str, Any], variants: dict[str, dict[str, Any]], selected: str, path: Path) -> None:
    """Latency at batch 1 (x, log) against accuracy (y); marker area proportional to size on disk."""
    require("matplotlib", extra="data", purpose="Drawing the compression trade-off plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = {"fp32": baseline, **variants}
    largest = max(rec["size_bytes"] for rec in points.values()) or 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        fig = Figure(figsize=(7.5, 5), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for name, rec in points.items():
            x, y = rec["latency"]["batch_1_ms"], rec["accuracy"] * 100
            area = 60 + 1400 * rec["size_bytes"] / largest
            color = "tab:red" if name == selected else ("tab:gray" if name == "fp32" else "tab:blue")
            ax.scatter([x], [y], s=area, alpha=0.5, color=color, edgecolors="black", linewidths=0.6)
            ax.annotate(f"{name}\n{rec['size_bytes'] / 1e6:.0f} MB", (x, y), textcoords="offset points",
                        xytext=(8, 6), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("latency at batch 1, ms (log scale; left is faster)")
        ax.set_ylabel("test accuracy, %")
        ax.set_title(f"Compression trade-off (marker area = size on disk; red = selected: {selected})")
        ax.grid(True, alpha=0.3)
        fig.savefig(path, format="png")
