"""Chinese: lmforge with the readability fix against TF-IDF and against the unfixed model, same splits.

On the packaged ``zh-reviews`` (seeded split, duplicates removed by prepare), three contenders:

- **fixed**: ``--model`` (default ``auto``: ``model.name`` left unset, so prepare picks the
  default for Han-script data, m3e-small) with ``model.extend_vocab: auto``: an English
  vocabulary that cannot read the data (``--model minilm-l6``) gets the unknown characters as
  new, trainable tokens; a Chinese-capable encoder needs none;
- **unfixed**: minilm-l6 as it was before issue 13 (``model.extend_vocab: false``,
  ``data.max_unknown_rate_stop: 1.0``): most characters are ``[UNK]`` and the embeddings frozen;
- **peer**: scikit-learn's TF-IDF over character 1-3-grams + logistic regression (C picked on
  the validation split) on the fixed run's splits.

Each lmforge contender runs ``lmforge.pipeline.run_all`` in its own child process; the fixed one
is then compressed (``onnx-int8-dynamic``) and its accuracy and latency measured. Reported: test
accuracy and macro-F1 beside the majority baseline, the unknown-token rate before and after,
training time, and the compressed variant's accuracy and latency.

    .venv/bin/python bench/chinese.py --quick                    # 600 examples, 40 steps (~5-10 minutes)
    .venv/bin/python bench/chinese.py                            # 8000 examples, 2 epochs
    .venv/bin/python bench/chinese.py --model minilm-l6 --no-unfixed   # the vocabulary extension
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    default_out,
    leave_workdir,
    log,
    read_job,
    run_worker,
    target,
    write_result,
    write_worker_result,
)

NAME = "chinese"
PEER_C_GRID = (1.0, 4.0, 16.0)
VARIANT = "onnx-int8-dynamic"


def lmforge_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.compress import CompressOptions, compress
    from lmforge.config import spec_from_dict
    from lmforge.pipeline import run_all
    from lmforge.rundir import RunDir

    start = time.perf_counter()
    metrics = run_all(spec_from_dict(job["spec"]), job["run_dir"], progress=False)
    seconds = round(time.perf_counter() - start, 2)
    run = RunDir(job["run_dir"])
    variant = None
    if job.get("compress"):
        options = CompressOptions(only=(VARIANT,), latency_repeats=job["latency_repeats"], warmup=2)
        summary = compress(run, options)
        meta = run.compressed_dir / VARIANT / "variant.json"
        variant = {"selected": summary["selected"], "reason": summary["reason"], "fp32": summary["baseline"],
                   "record": json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None}
    manifest = run.read_manifest()
    return {"metrics": metrics, "train": manifest.get("train", {}), "data": manifest.get("data", {}),
            "seconds": seconds, "variant": variant, "model": manifest["spec"]["model"]["name"]}


def tfidf_peer(run_dir: Path) -> dict[str, Any]:
    """TF-IDF over character 1-3-grams + logistic regression on the run's splits; C by validation accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from lmforge.rundir import RunDir, read_split

    run = RunDir(run_dir)
    split = {name: read_split(run, name) for name in ("train", "val", "test")}
    texts = {k: [r["text"] for r in v] for k, v in split.items()}
    labels = {k: [r["label"] for r in v] for k, v in split.items()}
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    x_train = vectorizer.fit_transform(texts["train"])
    x_val, x_test = vectorizer.transform(texts["val"]), vectorizer.transform(texts["test"])
    best: tuple[float, Any] | None = None
    for c in PEER_C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000).fit(x_train, labels["train"])
        score = float(accuracy_score(labels["val"], clf.predict(x_val))) if labels["val"] else 0.0
        if best is None or score > best[0]:
            best = (score, clf)
    if best is None:
        raise RuntimeError("no C value was tried")
    pred = best[1].predict(x_test)
    return {"accuracy": float(accuracy_score(labels["test"], pred)),
            "macro_f1": float(f1_score(labels["test"], pred, average="macro")),
            "chosen_C": float(best[1].C), "seconds": round(time.perf_counter() - start, 2), "n_test": len(pred)}


def _spec(args: argparse.Namespace, model: str, fixed: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"dataset": "zh-reviews", "seed": args.seed, "max_examples": args.max_examples}
    train: dict[str, Any] = {"method": "full", "learning_rate": args.lr, "batch_size": 32, "seed": args.seed,
                             "epochs": args.epochs}
    if args.max_steps:
        train["max_steps"] = args.max_steps
    spec: dict[str, Any] = {"name": f"bench-zh-{'fixed' if fixed else 'unfixed'}", "data": data,
                            "model": {"max_length": args.max_length}, "train": train}
    if model != "auto":  # auto: unset, as a user who names no model leaves it
        spec["model"]["name"] = model
    if not fixed:  # issue 13's starting point: no extension, and the readability check may not stop it
        spec["model"]["extend_vocab"] = False
        data["max_unknown_rate_stop"] = 1.0
    return spec


def _row(res: dict[str, Any]) -> dict[str, Any]:
    m, tr = res["metrics"], res["train"]
    readable = tr.get("readability") or {}
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n_test": m["n_test"],
            "majority": m.get("baselines", {}).get("majority"), "beats_baselines": m.get("baseline_check"),
            "unknown_rate_before": (readable.get("before") or {}).get("unknown_rate"),
            "unknown_rate_after": (readable.get("after") or readable.get("before") or {}).get("unknown_rate"),
            "added_tokens": (readable.get("extension") or {}).get("added", 0),
            "train_seconds": tr.get("seconds"), "steps": tr.get("steps"), "pipeline_seconds": res["seconds"],
            "peak_rss_bytes": res["process"]["peak_rss_bytes"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="600 examples, 40 steps: exercise the code path")
    ap.add_argument("--model", default="auto",
                    help="the fixed contender's model (a catalog name or folder; auto: lmforge's default for the data)")
    ap.add_argument("--no-unfixed", action="store_true", help="skip the unfixed minilm-l6 contender")
    ap.add_argument("--max-examples", type=int, default=8000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/chinese[-quick].json)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (path is printed)")
    ap.add_argument("--worker", choices=["lmforge"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, lmforge_worker(job))
        return 0
    if args.quick:
        args.max_examples, args.max_steps, args.max_length = 600, 40, 64

    out = args.out or default_out(NAME, args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-zh-"))
    results: dict[str, Any] = {}
    try:
        contenders = [("fixed", args.model, True)] + ([] if args.no_unfixed else [("unfixed", "minilm-l6", False)])
        for tag, model, fixed in contenders:
            log(f"{tag}: {model} on zh-reviews ({args.max_examples} examples)")
            job = {"spec": _spec(args, model, fixed), "run_dir": str(workdir / tag), "compress": fixed,
                   "latency_repeats": 5 if args.quick else 20}
            res = run_worker(__file__, "lmforge", job, workdir, tag=tag)
            results[tag] = {**_row(res), "variant": res["variant"], "spec": job["spec"], "data": res["data"],
                            "model": res["model"]}
            log(f"{tag}: {res['model']}, accuracy {res['metrics']['accuracy']:.4f}")
        results["peer"] = tfidf_peer(workdir / "fixed")
        log(f"peer: accuracy {results['peer']['accuracy']:.4f}")
    finally:
        leave_workdir(workdir, args.keep)

    fixed, peer = results["fixed"], results["peer"]
    record = ((fixed.get("variant") or {}).get("record")) or {}
    latency = record.get("latency") or {}
    summary = [
        {"metric": "test accuracy (fixed lmforge vs TF-IDF char 1-3)", "lmforge": fixed["accuracy"],
         "peer": peer["accuracy"], "ratio": fixed["accuracy"] / peer["accuracy"] if peer["accuracy"] else None},
        {"metric": "test macro-F1", "lmforge": fixed["macro_f1"], "peer": peer["macro_f1"], "ratio": None},
        {"metric": "unknown-token rate before -> after", "lmforge": fixed["unknown_rate_after"],
         "peer": fixed["unknown_rate_before"], "ratio": None},
        {"metric": "train seconds", "lmforge": fixed["train_seconds"], "peer": peer["seconds"], "ratio": None},
        {"metric": f"{VARIANT} accuracy", "lmforge": record.get("accuracy"), "peer": None, "ratio": None},
        {"metric": f"{VARIANT} batch-1 latency ms", "lmforge": latency.get("batch_1_ms"), "peer": None, "ratio": None},
    ]
    if "unfixed" in results:
        summary.insert(1, {"metric": "test accuracy (fixed vs unfixed minilm-l6)", "lmforge": fixed["accuracy"],
                           "peer": results["unfixed"]["accuracy"], "ratio": None})
    targets = [target("fixed accuracy >= TF-IDF char 1-3 accuracy", fixed["accuracy"], ">=", peer["accuracy"])]
    notes = [
        "Same splits for every contender: prepare is seeded and its splits do not depend on the model.",
        f"fixed: {results['fixed']['model']} (--model {args.model}), model.extend_vocab auto (for an English "
        "vocabulary: unknown characters added as tokens, trained even with frozen embeddings). unfixed: minilm-l6, "
        "model.extend_vocab false, data.max_unknown_rate_stop 1.0.",
        f"Peer: TF-IDF (char 1-3-grams, sublinear tf) + LogisticRegression, C from {list(PEER_C_GRID)} by val accuracy.",
    ]
    if args.quick:
        notes.append("QUICK MODE: 600 examples and 40 steps; accuracies are not the result, the target is not expected.")
    parameters = {"model": args.model, "fixed_model": results["fixed"]["model"], "seed": args.seed, "quick": args.quick, "max_examples": args.max_examples,
                  "epochs": args.epochs, "max_steps": args.max_steps, "lr": args.lr, "max_length": args.max_length}
    write_result(out, NAME, quick=args.quick, peer="TF-IDF char 1-3 + LR (or the unfixed model)",
                 parameters=parameters, results=results,
                 ratios={"accuracy_gain_points_vs_peer": round(100 * (fixed["accuracy"] - peer["accuracy"]), 2)},
                 targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
