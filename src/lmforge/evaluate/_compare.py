"""``lmforge runs compare``: runs side by side, the spec keys that differ and the scores.

Everything comes from the files each stage wrote, so any runs compare, finished or not: the
resolved ``spec.yaml`` (flattened to dotted keys; only keys whose values differ are shown),
the training summary in ``manifest.json`` (validation score, train loss, steps, time,
trainable parameters) and ``eval/metrics.json`` (every number at its top: accuracy, macro-F1,
ECE... for a classifier; ROUGE-L, chrF, perplexity... for a generative run). A value a run
lacks is shown as ``-``. The HTML page is one file with the same two tables, every value
escaped (a spec can hold any string).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmforge.errors import ConfigError, RunDirError
from lmforge.evaluate._report import CSS, escape, html_table
from lmforge.rundir import MANIFEST, RunDir, read_json

__all__ = ["RunComparison", "compare_runs", "render_comparison_html", "render_comparison_text"]

MISSING = "-"
# The training summary's scores, in the order shown, and their row names.
_TRAIN_ROWS = (("best_val_macro_f1", "val.macro_f1"), ("best_val_loss", "val.loss"), ("train_loss", "train.loss"),
               ("steps", "train.steps"), ("epochs", "train.epochs"), ("seconds", "train.seconds"),
               ("examples_per_second", "train.examples_per_second"),
               ("trainable_parameters", "train.trainable_parameters"))


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side: ``names`` (one column each), ``spec`` rows (dotted key, one value per
    run; only keys that differ) and ``metrics`` rows (name, one value per run), as text."""

    names: list[str]
    spec: list[tuple[str, list[str]]]
    metrics: list[tuple[str, list[str]]]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _show(value: Any) -> str:
    """A spec value as text: strings as they are, the rest as JSON (``null``, ``true``, ``[4, 8]``)."""
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: Any) -> str | None:
    """A score as text (integers whole, other numbers to 4 decimals), or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.4f}" if math.isfinite(float(value)) else str(float(value))


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The flattened spec, the manifest's training summary and the test metrics of one run."""
    run = RunDir(path)
    if not run.manifest_path.is_file():
        raise RunDirError(f"{path} is not a run directory (no {MANIFEST}): pass folders written by "
                          "`lmforge prepare`, `lmforge train` or `lmforge run`.")
    manifest = run.read_manifest()
    if run.spec_path.is_file():
        spec = yaml.safe_load(run.spec_path.read_text(encoding="utf-8")) or {}
    else:
        spec = manifest.get("spec") or {}
    metrics_path = run.eval_dir / "metrics.json"
    metrics = read_json(metrics_path, hint="Run `lmforge evaluate` again.") if metrics_path.is_file() else {}
    train = manifest.get("train") or {}
    return (_flatten(spec) if isinstance(spec, dict) else {}, train if isinstance(train, dict) else {},
            metrics if isinstance(metrics, dict) else {})


def _names(paths: list[Path]) -> list[str]:
    """Column names: each run's folder name, or its path where two runs share a folder name."""
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def compare_runs(paths: list[str | Path]) -> RunComparison:
    """Compare two or more run directories.

    Raises:
        ConfigError: fewer than two runs.
        RunDirError: a folder that is not a run (no ``manifest.json``).
    """
    if len(paths) < 2:
        raise ConfigError(f"runs compare needs at least two run directories, got {len(paths)}: "
                          "lmforge runs compare RUN_A RUN_B [...].")
    folders = [Path(p) for p in paths]
    read = [_read(p) for p in folders]
    specs = [spec for spec, _, _ in read]
    keys = sorted({key for spec in specs for key in spec})
    spec_rows = []
    for key in keys:
        shown = [_show(spec[key]) if key in spec else MISSING for spec in specs]
        if len(set(shown)) > 1:
            spec_rows.append((key, shown))
    metric_rows: list[tuple[str, list[str]]] = []
    for key, name in _TRAIN_ROWS:
        values = [_number(train.get(key)) for _, train, _ in read]
        if any(v is not None for v in values):
            metric_rows.append((name, [MISSING if v is None else v for v in values]))
    test_keys = [key for _, _, metrics in read for key, value in metrics.items() if _number(value) is not None]
    for key in dict.fromkeys(test_keys):  # first-seen order: the order evaluate writes them in
        values = [_number(metrics.get(key)) for _, _, metrics in read]
        metric_rows.append((f"test.{key}", [MISSING if v is None else v for v in values]))
    return RunComparison(_names(folders), spec_rows, metric_rows)


def render_comparison_text(comparison: RunComparison) -> str:
    """The two tables as plain text, one row per line, the columns of both aligned alike."""
    names = comparison.names
    spec_head = ["spec (keys that differ)", *names]
    metric_head = ["metrics", *names]
    table = [spec_head, metric_head] + [[key, *values] for key, values in comparison.spec + comparison.metrics]
    widths = [max(len(row[i]) for row in table) for i in range(len(spec_head))]

    def lines(head: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
        return ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
                for row in [head] + [[key, *values] for key, values in rows]]

    out = lines(spec_head, comparison.spec) if comparison.spec else ["spec: the same in every run"]
    out.append("")
    out += (lines(metric_head, comparison.metrics) if comparison.metrics
            else ["metrics: none recorded (train and evaluate the runs first)"])
    return "\n".join(out) + "\n"


def render_comparison_html(comparison: RunComparison) -> str:
    """The two tables as one self-contained HTML page (inline CSS, no scripts, every value escaped)."""
    numeric = [False] + [True] * len(comparison.names)
    spec = (html_table(["key", *comparison.names], [[k, *v] for k, v in comparison.spec])
            if comparison.spec else "<p>The same in every run.</p>")
    metrics = (html_table(["metric", *comparison.names], [[k, *v] for k, v in comparison.metrics], numeric)
               if comparison.metrics else "<p>None recorded (train and evaluate the runs first).</p>")
    title = "Runs compared: " + ", ".join(comparison.names)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            f"<h2>Spec: the keys that differ</h2>{spec}<h2>Metrics</h2>{metrics}</body></html>\n")
