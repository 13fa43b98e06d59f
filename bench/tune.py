"""Hyper-parameter search: `lmforge tune` (12 trials) against the default spec, on airline-tweets.

Both run through the CLI in child processes, one after the other, on the same prepared split
(same data section and seed; the result checks the data fingerprints match):

- default: `lmforge run --out DIR` (the embedded default job: minilm-l6, full fine-tuning, 1.5 epochs);
- tuned: `lmforge tune recipes/tune.yaml --out DIR` (12 trials: learning rate, epochs, batch size,
  warmup, weight decay; median pruning), whose best trial is evaluated on the test split once.

Target: tuned test accuracy >= default + 0.5 points.

    .venv/bin/python bench/tune.py --quick     # 300 tweets, 2 trials of 10 steps (~5 minutes on 2 busy cores)
    .venv/bin/python bench/tune.py             # the full comparison (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _harness import LMFORGE, REPO, default_out, leave_workdir, log, run_child, target, write_result

NAME = "tune"
RECIPE = REPO / "recipes" / "tune.yaml"
GAIN_POINTS = 0.5
QUICK = ["--set", "data.max_examples=300", "--set", "train.max_steps=10", "--set", "train.eval_steps=5",
         "--set", "model.max_length=64"]


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _lmforge(args: list[str], timeout: float) -> dict[str, Any]:
    log("lmforge " + " ".join(args[:3]))
    stats = run_child([str(LMFORGE), *args], timeout=timeout)
    if stats["returncode"] != 0:
        raise RuntimeError(f"lmforge {args[0]} failed with exit code {stats['returncode']}")
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small subset and 2 short trials: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/tune[-quick].json)")
    ap.add_argument("--trials", type=int, default=None, help="trials (default: the recipe's 12; 2 with --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (path is printed)")
    args = ap.parse_args()
    out = args.out or default_out(NAME, args.quick)
    trials = args.trials or (2 if args.quick else None)
    extra = QUICK if args.quick else []
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-tune-"))
    try:
        default_dir, tune_dir = workdir / "default", workdir / "tune"
        # The default spec with the quick settings, and nothing else of the recipe's.
        default_stats = _lmforge(["run", "--out", str(default_dir), "--no-progress", *extra], timeout=6 * 3600)
        tune_args = ["tune", str(RECIPE), "--out", str(tune_dir), *extra, *(["--trials", str(trials)] if trials else [])]
        tune_stats = _lmforge(tune_args, timeout=24 * 3600)
        default_metrics = _read(default_dir / "eval" / "metrics.json")
        best_metrics = _read(tune_dir / "best" / "eval" / "metrics.json")
        best_manifest = _read(tune_dir / "best" / "manifest.json")
        same_split = (_read(default_dir / "manifest.json")["data"]["fingerprint"]
                      == _read(tune_dir / "prepared" / "manifest.json")["data"]["fingerprint"])
        report = (tune_dir / "tune_report.html").is_file()
    finally:
        leave_workdir(workdir, args.keep)

    gain = round(100 * (best_metrics["accuracy"] - default_metrics["accuracy"]), 2)
    results = {
        "default": {"metrics": {k: default_metrics[k] for k in ("accuracy", "macro_f1", "n_test")},
                    "process": default_stats},
        "tuned": {"metrics": {k: best_metrics[k] for k in ("accuracy", "macro_f1", "n_test")}, "process": tune_stats,
                  "best_trial": best_manifest["tune"], "best_train": best_manifest.get("train", {})},
        "same_test_split": same_split,
        "report_written": report,
    }
    targets = [target("tuned test accuracy gain over the default spec", gain, ">=", GAIN_POINTS, " points")]
    summary = [
        {"metric": "airline-tweets test accuracy", "lmforge": best_metrics["accuracy"],
         "peer": default_metrics["accuracy"], "ratio": best_metrics["accuracy"] / default_metrics["accuracy"]},
        {"metric": "airline-tweets test macro-F1", "lmforge": best_metrics["macro_f1"],
         "peer": default_metrics["macro_f1"], "ratio": best_metrics["macro_f1"] / default_metrics["macro_f1"]},
        {"metric": "wall seconds", "lmforge": tune_stats["wall_seconds"], "peer": default_stats["wall_seconds"], "ratio": None},
    ]
    notes = [
        "lmforge: `lmforge tune recipes/tune.yaml` (TPE sampler, median pruner, objective validation accuracy); "
        "the best trial is evaluated on the test split once, at the end.",
        "Peer: the default spec (`lmforge run`, no search) on the same split"
        + ("" if same_split else " -- WARNING: the data fingerprints differ, the splits are not the same") + ".",
    ]
    if args.quick:
        notes.append("QUICK MODE: 300 tweets, 10 steps per trial, 2 trials; the target is not expected to be met.")
    parameters = {"recipe": str(RECIPE.relative_to(REPO)), "trials": trials or "recipe (12)", "quick": args.quick,
                  "quick_overrides": extra}
    write_result(out, NAME, quick=args.quick, peer="default spec", parameters=parameters, results=results,
                 ratios={"accuracy_gain_points": gain}, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
