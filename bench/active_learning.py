"""Active learning, simulated: accuracy per labelled example for each `lmforge monitor sample` strategy
against random sampling, on airline-tweets and Banking77, one run.

Each task: a seeded unlabelled pool, a fixed validation and test split. Round 0 labels
``--initial`` random pool texts (the same for every strategy); each later round trains lmforge's
classifier (``lmforge.train.train`` on a prepared run, the task's spec) on what is labelled so far,
scores the rest of the pool with it and "labels" the ``--step`` texts the strategy picks
(``lmforge.monitor.acquisition_scores``; ``diverse`` = ``k_center`` on the trained encoder's
embeddings among the 5 x step most uncertain, as ``monitor sample`` does), for ``--rounds``
rounds. The peer is random sampling with the same model, rounds and seed.

Reported: test accuracy after every round per strategy, and the labels each strategy needs to
reach random's final accuracy. Target (issue 19): uncertainty or diverse reaches it with
<= 60 % of random's labels.

    .venv/bin/python bench/active_learning.py --quick                 # small pool, 2 rounds, few steps
    .venv/bin/python bench/active_learning.py                         # both tasks (hours on 2 cores)
    .venv/bin/python bench/active_learning.py --tasks airline-tweets --strategies random uncertainty
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import SHARED_DATASETS, default_out, log, target, write_result

NAME = "active_learning"
STRATEGIES = ("random", "uncertainty", "margin", "entropy", "diverse")
TARGET_SHARE = 0.6


def load_task(task: str, pool: int, n_val: int, n_test: int, seed: int) -> dict[str, list[dict[str, str]]]:
    """Seeded, disjoint pool / val / test rows ``{"text", "label"}`` of a task."""
    import pandas as pd

    if task == "airline-tweets":
        from lmforge.catalog import load_dataset

        df = load_dataset("airline-tweets")[["text", "label"]]
    elif task == "banking77":
        df = pd.read_csv(SHARED_DATASETS / "banking77" / "banking77_train.csv").rename(columns={"category": "label"})
    else:
        raise SystemExit(f"unknown task {task}")
    df = df.drop_duplicates("text").sample(frac=1.0, random_state=seed).reset_index(drop=True)
    rows = df.to_dict("records")
    return {"test": rows[:n_test], "val": rows[n_test:n_test + n_val], "pool": rows[n_test + n_val:n_test + n_val + pool]}


def train_on(rows: list[dict[str, str]], data: dict[str, list], labels: list[str], spec: dict[str, Any],
             workdir: Path) -> Any:
    """A fresh prepared run of ``rows``, trained; its fp32 predictor."""
    from lmforge.config import spec_from_dict
    from lmforge.predict import load_predictor
    from lmforge.rundir import RunDir
    from lmforge.train import train

    run = RunDir(tempfile.mkdtemp(dir=workdir, prefix="round-"))
    run.data_dir.mkdir(parents=True)
    for split, part in (("train", rows), ("val", data["val"]), ("test", data["test"])):
        run.split_path(split).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    run.labels_path.write_text(json.dumps({"labels": labels}), encoding="utf-8")
    train(spec_from_dict(spec), run, progress=False)
    return load_predictor(run, "fp32")


def pick(strategy: str, predictor: Any, texts: list[str], n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``texts`` to label next."""
    from lmforge.monitor import acquisition_scores, k_center

    if strategy == "random":
        return sorted(rng.choice(len(texts), size=min(n, len(texts)), replace=False).tolist())
    score = acquisition_scores(predictor.predict_proba(texts), strategy)
    order = np.argsort(-score, kind="stable")
    if strategy != "diverse":
        return order[:n].tolist()
    candidates = order[: 5 * n].tolist()
    vectors = predictor.embed([texts[i] for i in candidates])
    return [candidates[i] for i in k_center(vectors, n)]


def accuracy(predictor: Any, rows: list[dict[str, str]]) -> float:
    predicted = [p["label"] for p in predictor.predict([r["text"] for r in rows])]
    return float(np.mean([p == r["label"] for p, r in zip(predicted, rows, strict=True)]))


def run_task(task: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Long because it is the simulation: round 0, then each strategy's rounds, logged as they go."""
    data = load_task(task, args.pool, args.val, args.test, args.seed)
    labels = sorted({r["label"] for part in data.values() for r in part})
    spec = {"model": {"name": args.model, "max_length": args.max_length},
            "train": {"epochs": args.epochs, "batch_size": 16, "learning_rate": args.learning_rate,
                      "seed": args.seed, **({"max_steps": args.max_steps} if args.max_steps else {})}}
    pool_texts = [r["text"] for r in data["pool"]]
    first = sorted(np.random.default_rng(args.seed).choice(len(pool_texts), size=args.initial, replace=False).tolist())
    start = time.perf_counter()
    base = train_on([data["pool"][i] for i in first], data, labels, spec, workdir)
    base_acc = accuracy(base, data["test"])
    log(f"{task}: round 0, {len(first)} labels, accuracy {base_acc:.4f}")
    curves: dict[str, list[dict[str, float]]] = {}
    for strategy in args.strategies:
        rng = np.random.default_rng(args.seed + 1)
        labelled, predictor = list(first), base
        curve = [{"labels": len(labelled), "accuracy": base_acc}]
        for round_ in range(1, args.rounds + 1):
            rest = [i for i in range(len(pool_texts)) if i not in set(labelled)]
            chosen = pick(strategy, predictor, [pool_texts[i] for i in rest], args.step, rng)
            labelled += [rest[i] for i in chosen]
            predictor = train_on([data["pool"][i] for i in labelled], data, labels, spec, workdir)
            curve.append({"labels": len(labelled), "accuracy": accuracy(predictor, data["test"])})
            log(f"{task}: {strategy} round {round_}, {len(labelled)} labels, accuracy {curve[-1]['accuracy']:.4f}")
        curves[strategy] = curve
    final = curves["random"][-1] if "random" in curves else None
    if final is not None and final["accuracy"] <= base_acc:
        final = None  # random sampling never improved on round 0: "labels to reach it" measures nothing
    needed = {}
    for strategy, curve in curves.items():
        reach = next((p["labels"] for p in curve if final is not None and p["accuracy"] >= final["accuracy"]), None)
        needed[strategy] = {"labels": reach, "share_of_random": None if reach is None or final is None
                            else round(reach / final["labels"], 4)}
    return {"labels": len(labels), "pool": len(pool_texts), "test": len(data["test"]), "curves": curves,
            "to_reach_random_final": needed, "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small pool, 2 rounds, a few steps: the code path only")
    ap.add_argument("--tasks", nargs="+", default=["airline-tweets", "banking77"])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--pool", type=int, default=3000)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--initial", type=int, default=100)
    ap.add_argument("--step", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--epochs", type=float, default=50.0, help="an upper bound: --max-steps ends each round's training")
    ap.add_argument("--max-steps", type=int, default=150,
                    help="optimizer steps per round (the same budget whatever the label count: from 100 labels "
                         "a few epochs are a handful of steps, and a model that saw a handful stays at the majority class)")
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.pool, args.val, args.test, args.initial, args.step, args.rounds, args.max_steps = 200, 40, 100, 40, 40, 2, 6
    if "random" not in args.strategies:
        args.strategies = ["random", *args.strategies]
    out = args.out or default_out(NAME, args.quick)
    results, targets, summary = {}, [], []
    with tempfile.TemporaryDirectory(prefix="lmforge-al-") as tmp:
        for task in args.tasks:
            results[task] = run_task(task, args, Path(tmp))
            best = min((v["share_of_random"] for k, v in results[task]["to_reach_random_final"].items()
                        if k in ("uncertainty", "diverse") and v["share_of_random"] is not None), default=None)
            targets.append(target(f"{task}: labels uncertainty/diverse need to reach random's final accuracy, "
                                  "share of random's", best, "<=", TARGET_SHARE))
            for strategy, curve in results[task]["curves"].items():
                summary.append({"metric": f"{task} {strategy} final accuracy ({curve[-1]['labels']} labels)",
                                "lmforge": round(curve[-1]["accuracy"], 4),
                                "peer": round(results[task]["curves"]["random"][-1]["accuracy"], 4),
                                "ratio": round(curve[-1]["accuracy"] / max(results[task]["curves"]["random"][-1]
                                                                           ["accuracy"], 1e-9), 4)})
    write_result(out, NAME, quick=args.quick, peer="random sampling", parameters=vars(args) | {"out": str(out)},
                 results=results, ratios={}, targets=targets, summary=summary,
                 notes=["One seeded pool per task; every strategy starts from the same round-0 labels and model.",
                        "Quality, not speed: the timings in `seconds` are the whole simulation's."])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
