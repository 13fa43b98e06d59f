"""`lmforge tune`: prepare once, search with Optuna (trials in run directories of their own), keep the best.

``DIR/prepared`` holds the one split every trial trains on (prepared once; a rerun reuses it).
``DIR/trials/NNN`` is trial NNN's run directory, its spec the base spec with the trial's values.
``DIR/study.db`` is the Optuna study (SQLite): a rerun after a kill continues it (``_study``).
``DIR/best`` is a copy of the winning trial's run, evaluated on the test split there, once (a
rerun that finds the same winner does not evaluate it again; a new winner replaces it).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.config import Spec, load_spec, spec_with_params
from lmforge.errors import ConfigError, LmforgeError
from lmforge.evaluate import evaluate
from lmforge.pipeline import check_spec, prepare_run
from lmforge.predict import load_predictor
from lmforge.rundir import FP32, RunDir, read_json, read_split
from lmforge.tune._report import importances, write_report
from lmforge.tune._study import exclusive, finished_count, open_study, optuna_module
from lmforge.tune._trial import run_trial

logger = logging.getLogger(__name__)

__all__ = ["BEST", "PREPARED", "TuneResult", "tune"]

PREPARED = "prepared"
BEST = "best"


@dataclass
class TuneResult:
    """What a search left in ``out``: one row per trial, the best run and its test metrics."""

    out: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    best: Path | None = None
    test_metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _prepared(spec: Spec, root: Path) -> RunDir:
    """``ROOT/prepared``: the split every trial shares, prepared on the first call and reused after."""
    run = RunDir(root / PREPARED)
    complete = run.manifest_path.is_file() and "fingerprint" in run.read_manifest().get("data", {})
    if not (complete and all(run.split_path(s).is_file() for s in ("train", "val", "test"))):
        prepare_run(spec_with_params(spec, {}), run.root)
    if not read_split(run, "val"):
        raise ConfigError(f"{run.split_path('val')} is empty: tune scores trials on the validation split. "
                          "Set data.val_fraction above 0 (e.g. 0.1).")
    return run


def _rows(study: Any, spec: Spec) -> list[dict[str, Any]]:
    two = spec.tune.second_objective is not None
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = t.values or [None, None]
        note = ("killed; retried" if t.user_attrs.get("killed") else t.user_attrs.get("error")
                or (f"pruned at step {t.user_attrs['pruned_at_step']}" if "pruned_at_step" in t.user_attrs else "")
                or (f"retry of trial {t.user_attrs['retry_of']}" if "retry_of" in t.user_attrs else ""))
        rows.append({"trial": t.number, "state": t.state.name, "value": values[0],
                     "second": values[1] if two and len(values) > 1 else None, "params": dict(t.params),
                     "seconds": t.user_attrs.get("seconds"), "run": t.user_attrs.get("run"), "note": note})
    return rows


def _best_trial(study: Any, spec: Spec) -> Any:
    """The winner: the best objective; with two objectives, the Pareto trial best on the first
    (ties: the lower second). None when no trial completed."""
    state = optuna_module().trial.TrialState
    if not study.get_trials(deepcopy=False, states=(state.COMPLETE,)):
        return None
    if spec.tune.second_objective is None:
        return study.best_trial
    return sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))[0]


def _make_best(root: Path, trial: Any) -> tuple[RunDir, dict[str, Any]]:
    """``ROOT/best`` = a copy of ``trial``'s run, evaluated on the test split unless it already was."""
    best = RunDir(root / BEST)
    metrics_path = best.eval_dir / "metrics.json"
    if best.manifest_path.is_file() and best.read_manifest().get("tune", {}).get("trial") == trial.number \
            and metrics_path.is_file():
        return best, read_json(metrics_path, hint="Delete DIR/best and run lmforge tune again.")
    staging = root / f".{BEST}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(root / trial.user_attrs["run"], staging)
    shutil.rmtree(best.root, ignore_errors=True)
    staging.rename(best.root)
    spec = load_spec(best.spec_path)
    logger.info("best trial %d: evaluating %s on the test split", trial.number, best.root)
    metrics = evaluate(spec, best, load_predictor(best, FP32))
    best.update_manifest(tune={"trial": trial.number, "params": dict(trial.params), "values": list(trial.values),
                               "study": "../study.db"})
    return best, metrics


def tune(spec: Spec, out: str | Path, *, trials: int | None = None, timeout: float | None = None) -> TuneResult:
    """Search ``spec.tune.space`` into ``out``; ``trials``/``timeout`` override ``tune.trials``/``tune.timeout``.

    Runs until the study holds ``trials`` finished trials (complete, pruned, or failed with an
    error; a trial killed with its process does not count and is run again), or until ``timeout``
    seconds after the first trial started: no trial starts after that, and the running one is
    finished, not cut. The clock is per call (a rerun gets its own ``timeout``).

    Raises:
        ConfigError: no search space, a generative task, a DIR of another spec, or a second search
            running on ``out``.
        LmforgeError: no trial completed (the table of trials says why each failed).
    """
    optuna_module()  # MissingExtraError before any work
    cfg = spec.tune
    if not cfg.space:
        raise ConfigError("tune.space is empty: name the spec keys to search, e.g. "
                          "tune.space: {train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}}.")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}.")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}.")
    check_spec(spec)
    if spec.task == "generate":
        raise ConfigError("lmforge tune searches classifiers (tune.objective is accuracy or macro_f1); "
                          "task 'generate' is not supported.")
    n, limit, root = trials or cfg.trials, timeout or cfg.timeout, Path(out)
    with exclusive(root):
        prepared = _prepared(spec, root)
        study = open_study(root, spec, n)
        remaining = n - finished_count(study)
        started = time.monotonic()
        if remaining > 0:
            study.optimize(lambda trial: run_trial(trial, spec, root, prepared), n_trials=remaining, timeout=limit,
                           catch=(LmforgeError,), gc_after_trial=True)
        finished = finished_count(study)
        stopped = "trials" if finished >= n else "timeout"
        rows = _rows(study, spec)
        winner = _best_trial(study, spec)
        summary: dict[str, Any] = {
            "spec_name": spec.name, "objective": cfg.objective, "second_objective": cfg.second_objective,
            "pruner": cfg.resolved_pruner, "trials": n, "finished": finished, "timeout": limit,
            "stopped_by": stopped, "seconds": round(time.monotonic() - started, 2),
            "best_trial": None if winner is None else winner.number,
        }
        if winner is None:
            write_report(root, rows, summary, {}, set())
            raise LmforgeError(f"No trial of the search in {root} completed ({finished} finished, none with a "
                               f"score): see the notes in {root / 'tune_report.html'}.")
        best, metrics = _make_best(root, winner)
        summary["test"] = {k: metrics.get(k) for k in ("accuracy", "macro_f1", "n_test")}
        front = {t.number for t in study.best_trials} if cfg.second_objective else set()
        files = write_report(root, rows, summary, importances(study), front)
    return TuneResult(out=root, rows=rows, summary=summary, best=best.root, test_metrics=metrics, files=files)
