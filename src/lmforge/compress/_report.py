"""``compressed/compression_report.md`` and ``compressed/tradeoff.png`` (latency vs accuracy, size as area)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from lmforge._extras import require

__all__ = ["plot_tradeoff", "render_gen_report", "render_report"]


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


def plot_tradeoff(baseline: dict[str, Any], variants: dict[str, dict[str, Any]], selected: str, path: Path,
                  metric: str = "accuracy") -> None:
    """Latency at batch 1 (x, log) against ``metric`` (y); marker area proportional to size on disk."""
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
            x, y = rec["latency"]["batch_1_ms"], rec[metric] * 100
            area = 60 + 1400 * rec["size_bytes"] / largest
            color = "tab:red" if name == selected else ("tab:gray" if name == "fp32" else "tab:blue")
            ax.scatter([x], [y], s=area, alpha=0.5, color=color, edgecolors="black", linewidths=0.6)
            ax.annotate(f"{name}\n{rec['size_bytes'] / 1e6:.0f} MB", (x, y), textcoords="offset points",
                        xytext=(8, 6), fontsize=8)
        ax.set_xscale("log")
        per = " per generated token" if metric == "rouge_l" else ""
        ax.set_xlabel(f"latency at batch 1, ms{per} (log scale; left is faster)")
        ax.set_ylabel("test ROUGE-L x 100" if metric == "rouge_l" else "test accuracy, %")
        ax.set_title(f"Compression trade-off (marker area = size on disk; red = selected: {selected})")
        ax.grid(True, alpha=0.3)
        fig.savefig(path, format="png")


def render_gen_report(baseline: dict[str, Any], variants: dict[str, dict[str, Any]], selection: dict[str, Any],
                      skipped: dict[str, str], options: dict[str, Any]) -> str:
    """The Markdown report of a generative run: speed, size and quality per variant, the selection."""
    base_size = baseline["size_bytes"]
    rows = [
        "| variant | size MB (x fp32) | tokens/s b1 | tokens/s b8 | TTFT ms | ROUGE-L | Δ points | perplexity "
        "| stop rate | selected |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, rec: dict[str, Any]) -> str:
        lt = rec["latency"]
        drop = (baseline["rouge_l"] - rec["rouge_l"]) * 100
        delta = "0.00" if abs(drop) < 0.005 else f"{-drop:+.2f}"
        ppl = "-" if rec.get("perplexity") is None else f"{rec['perplexity']:.3f}"
        mark = "**yes**" if selection["variant"] == name else ""
        return (f"| {name} | {_mb(rec['size_bytes'])} ({rec['size_bytes'] / base_size:.2f}) "
                f"| {lt['tokens_per_s_batch_1']:.1f} | {lt['tokens_per_s_batch_8']:.1f} | {lt['ttft_ms']:.1f} "
                f"| {rec['rouge_l']:.4f} | {delta} | {ppl} | {rec['stop_rate']:.2f} | {mark} |")

    rows.append(row("fp32", baseline))
    rows += [row(name, rec) for name, rec in variants.items()]
    measured = baseline["measured"]
    lines = [
        "# Compression report (generative run)", "",
        f"**Selected: `{selection['variant']}`** — {selection['reason']}.", "",
        f"Budget: {selection['budget']:g} ROUGE-L point(s) below fp32 ({baseline['rouge_l']:.4f}); fastest by "
        f"time per generated token at {selection['speed_by'].replace('_', ' ')}.", "",
        *rows, "", "## Why each variant was or was not selected", "",
        *[f"- `{c['name']}`: {c['why']}" for c in selection["considered"]],
    ]
    if skipped:
        lines += ["", "## Skipped", "", *[f"- `{name}`: {why}" for name, why in skipped.items()]]
    lines += [
        "", "## How this was measured", "",
        f"- Quality: {measured['quality']} (ROUGE-L F, 0-1; the perplexity of the reference answers).",
        f"- Speed: {measured['what']}; {measured['new_tokens']} new tokens per answer at batch 1 and 8, time to "
        f"first token = one new token at batch 1; {measured['warmup']} warm-up runs, then the "
        f"{measured['statistic']} of {measured['repeats']} timed runs; {measured['threads']} torch threads. "
        f"Measured {measured['date']} on this machine; every variant in `<variant>/variant.json`.",
        "- Size: bytes of the weight files (for fp32 model/*.safetensors, an adapter run's base model included).",
        f"- Options: `{ {k: v for k, v in options.items() if v is not None} }`", "",
        "![latency vs ROUGE-L](tradeoff.png)", "",
    ]
    return "\n".join(lines)
