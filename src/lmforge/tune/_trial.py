"""One trial of `lmforge tune`: its parameters sampled, its run directory trained, its scores returned."""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from lmforge.config import Spec, range_kind, spec_with_params
from lmforge.errors import ConfigError, LmforgeError
from lmforge.pipeline import init_run
from lmforge.predict import load_predictor
from lmforge.rundir import FP32, RunDir, read_split
from lmforge.train import train

logger = logging.getLogger(__name__)

__all__ = ["TRIALS", "run_trial", "suggest", "trial_dir"]

TRIALS = "trials"
"""``DIR/trials/NNN``: one run directory per trial, by its number in the study."""

_LATENCY_TEXTS = 20


def trial_dir(root: Path, number: int) -> Path:
    return root / TRIALS / f"{number:03d}"


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Sample every ``tune.space`` key: a list is categorical, a range is ``suggest_int`` for an
    integer key and ``suggest_float`` otherwise (``log`` and ``step`` as given)."""
    params: dict[str, Any] = {}
    for key, value in space.items():
        if isinstance(value, list):
            params[key] = trial.suggest_categorical(key, value)
        elif range_kind(key) is int:
            params[key] = trial.suggest_int(key, value["low"], value["high"], step=value.get("step") or 1,
                                            log=bool(value.get("log", False)))
        else:
            params[key] = trial.suggest_float(key, value["low"], value["high"], step=value.get("step"),
                                              log=bool(value.get("log", False)))
    return params


def _latency_ms(run: RunDir) -> float:
    """Median milliseconds to classify one validation text with the trial's fp32 model (torch, batch 1)."""
    texts = [r["text"] for r in read_split(run, "val")][:_LATENCY_TEXTS]
    predictor = load_predictor(run, FP32)
    predictor.predict(texts[:2], batch_size=1)  # warm-up
    times = []
    for text in texts:
        start = time.perf_counter()
        predictor.predict([text], batch_size=1)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def run_trial(trial: Any, spec: Spec, root: Path, prepared: RunDir) -> float | tuple[float, float]:
    """Train ``trial``'s run in ``ROOT/trials/NNN`` on the prepared split and return its objective(s).

    The objective is the validation score (``tune.objective``) at the run's best checkpoint
    (chosen, as in every run, by validation macro-F1); a second objective is the fp32 model's
    batch-1 latency or its trainable parameters. A trial whose spec is invalid, or whose training
    fails with an lmforge error, records the message (user attribute ``error``) and fails.

    Raises:
        optuna.TrialPruned: the pruner stopped it (its run directory still holds its model).
    """
    from lmforge.tune._pruning import TrialCallback  # transformers at its top
    from lmforge.tune._study import optuna_module

    optuna = optuna_module()
    cfg = spec.tune
    run = RunDir(trial_dir(root, trial.number))
    trial.set_user_attr("run", str(run.root.relative_to(root)))
    start = time.perf_counter()
    try:
        params = suggest(trial, cfg.space)
        trial_spec = spec_with_params(spec, params)
        shutil.rmtree(run.root, ignore_errors=True)
        shutil.copytree(prepared.data_dir, run.data_dir)
        init_run(trial_spec, run.root)
        run.update_manifest(data=prepared.read_manifest().get("data", {}),
                            tune={"trial": trial.number, "params": params})
        callback = TrialCallback(trial, cfg.objective, prune=cfg.second_objective is None)
        summary = train(trial_spec, run, progress=False, callbacks=[callback])
        if not callback.scores:
            raise ConfigError(f"Trial {trial.number} was never evaluated on the validation split "
                              f"({run.root}): set train.eval_steps, or train at least one epoch.")
    except LmforgeError as exc:
        trial.set_user_attr("error", str(exc))
        logger.warning("trial %d failed: %s", trial.number, exc)
        raise
    finally:
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
    trial.set_user_attr("steps", summary["steps"])
    trial.set_user_attr("trainable_params", summary["trainable_parameters"])
    if callback.pruned_at is not None:
        trial.set_user_attr("pruned_at_step", callback.pruned_at)
        raise optuna.TrialPruned(f"trial {trial.number} pruned at step {callback.pruned_at}")
    best_step = summary.get("best_checkpoint_step")
    scores = callback.scores[best_step if best_step in callback.scores else max(callback.scores)]
    trial.set_user_attr("val", scores)
    value = scores[cfg.objective]
    if cfg.second_objective == "latency_ms":
        latency = _latency_ms(run)
        trial.set_user_attr("latency_ms", latency)
        return value, latency
    if cfg.second_objective == "trainable_params":
        return value, float(summary["trainable_parameters"])
    return value
