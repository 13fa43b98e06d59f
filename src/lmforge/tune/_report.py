"""The search's report: ``DIR/tune_report.html`` (self-contained) and its PNGs, and the terminal table.

Plots are drawn on an explicit Agg canvas, not through Optuna's ``optuna.visualization.matplotlib``
(which draws through ``pyplot``'s global state and is marked experimental): the history, the
importances (Optuna's default evaluator, PED-ANOVA) and the Pareto front are a few lines each.
The page inlines its CSS and images (base64) and escapes every value, since parameter values
and error messages come from the user's spec.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.rundir import atomic_write_text

__all__ = ["HISTORY_PNG", "IMPORTANCE_PNG", "PARETO_PNG", "REPORT", "format_table", "importances", "write_report"]

REPORT = "tune_report.html"
HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"
PARETO_PNG = "pareto_front.png"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; } th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.best td { background: #eef6ee; font-weight: 600; }
img { max-width: 100%; height: auto; } .muted { color: #666; }
"""


def _figure(width: float, height: float) -> Any:
    require("matplotlib", extra="data", purpose="Drawing the tune report's plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _plot_history(rows: list[dict[str, Any]], objective: str, path: Path) -> Path:
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    done = [r for r in rows if r["value"] is not None]
    ax.scatter([r["trial"] for r in done], [r["value"] for r in done], label=f"validation {objective}", zorder=3)
    best, xs, ys = float("-inf"), [], []
    for r in sorted(done, key=lambda r: r["trial"]):
        best = max(best, r["value"])
        xs.append(r["trial"])
        ys.append(best)
    ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    pruned = [r["trial"] for r in rows if r["state"] == "PRUNED"]
    if pruned:
        ax.scatter(pruned, [min(ys or [0])] * len(pruned), marker="x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("Optimization history")
    ax.legend()
    return _save(fig, path)


def _plot_importances(importances: dict[str, float], path: Path) -> Path:
    fig = _figure(7, 0.6 + 0.45 * len(importances))
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.set_title("Parameter importances")
    return _save(fig, path)


def _plot_pareto(rows: list[dict[str, Any]], objective: str, second: str, front: set[int], path: Path) -> Path:
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    done = [r for r in rows if r["value"] is not None and r["second"] is not None]
    other = [r for r in done if r["trial"] not in front]
    best = sorted((r for r in done if r["trial"] in front), key=lambda r: r["second"])
    ax.scatter([r["second"] for r in other], [r["value"] for r in other], color="tab:blue", label="trial")
    ax.plot([r["second"] for r in best], [r["value"] for r in best], "o-", color="tab:red", label="Pareto front")
    for r in done:
        ax.annotate(str(r["trial"]), (r["second"], r["value"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{second} (lower is better)")
    ax.set_ylabel(f"validation {objective}")
    ax.set_title("Pareto front")
    ax.legend()
    return _save(fig, path)


def importances(study: Any, objective_index: int = 0) -> dict[str, float]:
    """Parameter importances for the first objective; empty below 2 complete trials or 2 parameters."""
    from lmforge.tune._study import optuna_module

    optuna = optuna_module()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    params = {name for t in complete for name in t.params}
    if len(complete) < 2 or len(params) < 2:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few trials for a confident estimate: the plot says what it can
        try:
            found = optuna.importance.get_param_importances(study, target=lambda t: t.values[objective_index])
        except (ValueError, RuntimeError):  # e.g. every trial drew the same value of a parameter
            return {}
    return {k: float(v) for k, v in found.items()}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    return f"<td>{html.escape('' if value is None else str(value), quote=True)}</td>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}"></p>'


def write_report(root: Path, rows: list[dict[str, Any]], summary: dict[str, Any],
                 importance: dict[str, float], front: set[int]) -> dict[str, Path]:
    """Write the PNGs that apply and ``ROOT/tune_report.html``; returns what was written, by name."""
    objective, second = summary["objective"], summary.get("second_objective")
    written = {"history": _plot_history(rows, objective, root / HISTORY_PNG)}
    if importance:
        written["importances"] = _plot_importances(importance, root / IMPORTANCE_PNG)
    if second:
        written["pareto"] = _plot_pareto(rows, objective, second, front, root / PARETO_PNG)
    header = ["trial", "state", objective, *([second] if second else []), "seconds", "params", "note"]
    body = "".join(
        f'<tr class="{"best" if r["trial"] == summary.get("best_trial") else ""}">'
        + "".join(_cell(v) for v in (r["trial"], r["state"], r["value"], *([r["second"]] if second else []),
                                     r["seconds"], json.dumps(r["params"], sort_keys=True), r["note"]))
        + "</tr>"
        for r in rows
    )
    test = summary.get("test") or {}
    facts = [("Objective", f"validation {objective}" + (f", then {second} (minimized)" if second else "")),
             ("Trials finished / asked", f"{summary['finished']} / {summary['trials']}"),
             ("Stopped by", summary["stopped_by"]), ("Pruner", summary["pruner"]),
             ("Best trial", summary.get("best_trial")),
             ("Best trial's test accuracy", test.get("accuracy")), ("Best trial's test macro-F1", test.get("macro_f1"))]
    page = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lmforge tune report</title>"
        f"<style>{_CSS}</style></head><body><h1>Hyper-parameter search</h1>"
        f"<p class=\"muted\">{html.escape(str(summary['spec_name']))}: the best trial is copied to best/ and "
        "evaluated on the test split once, at the end; every other number is on the validation split.</p>"
        "<table>" + "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in facts) + "</table>"
        "<h2>Trials</h2><table class=\"trials\"><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header) + f"</tr></thead><tbody>{body}</tbody></table>"
        "<h2>Plots</h2>" + "".join(_img(p, name) for name, p in written.items())
        + ("" if importance else "<p class=\"muted\">Parameter importances need at least 2 complete trials "
           "and 2 parameters.</p>")
        + "</body></html>\n"
    )
    atomic_write_text(root / REPORT, page)
    written["report"] = root / REPORT
    return written


def format_table(rows: list[dict[str, Any]], objective: str, second: str | None = None) -> str:
    """The trials as a plain-text table for the terminal: trial, state, score(s), seconds, params, note."""
    header = ["trial", "state", objective, *([second] if second else []), "seconds", "params", "note"]
    lines = [[str(r["trial"]), r["state"], "" if r["value"] is None else f"{r['value']:.4f}",
              *(["" if r["second"] is None else f"{r['second']:.4g}"] if second else []),
              "" if r["seconds"] is None else f"{r['seconds']:.1f}",
              " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(r["params"].items())),
              r["note"]]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [header, *lines])
