"""Every fine-tuning method on airline-tweets and Banking77: accuracy, cost and size, one run.

Each method of ``lmforge.train.METHODS`` (full, lora, adalora, ia3, adapter-houlsby,
adapter-pfeiffer, prefix, prompt) goes through lmforge's whole pipeline
(``lmforge.pipeline.run_all``: prepare, train, evaluate) in a child process, on the task specs of
``bench/accuracy.py`` (same data sections and seed, so every method sees the same split; the
result checks the data fingerprints match), with the same epochs budget and early stopping, and a
learning rate per method family (``LEARNING_RATES``: fresh parameters next to frozen weights want a
larger step than full fine-tuning does; prefix and prompt tuning the largest). Then ``lmforge
compress`` builds the int8 ONNX variant (and what it builds on), and the selected variant's latency
is read from the compress summary.

Reported per task and method: test accuracy and macro-F1, trainable parameters (count and share of
the model), the saved model's size on disk (an adapter run saves only its adapter), training
samples/s, the training process's peak RSS, and latency at batch 1 of the variant compress selects.
Targets: lora, adalora, ia3 and both bottleneck adapters within 1.5 points of full fine-tuning on
both tasks with at most 5 % of the parameters trained; prefix tuning within 3 points; prompt
tuning is reported without a target.

    .venv/bin/python bench/peft_methods.py --quick                    # tiny subsets, a few steps
    .venv/bin/python bench/peft_methods.py                            # every method, both tasks (hours)
    .venv/bin/python bench/peft_methods.py --tasks airline-tweets --methods full lora

The full run is longer than a working session, so it can be taken in parts: every finished (task,
method) row is kept in ``--partial`` (default ``bench/results/peft_methods-partial.json``, with the
machine and date it ran on), and a later run reuses a kept row whose spec is the same instead of
training it again; each run's result holds every row the partial file has for its tasks and methods.
Accuracies are comparable across machines; samples/s, RSS and latency only within one machine (each
row says which). ``--fresh`` ignores the kept rows.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    RESULTS,
    default_out,
    leave_workdir,
    log,
    machine,
    read_job,
    run_worker,
    target,
    write_result,
    write_worker_result,
)
from accuracy import add_task_arguments, task_specs

NAME = "peft_methods"
METHODS = ("full", "lora", "adalora", "ia3", "adapter-houlsby", "adapter-pfeiffer", "prefix", "prompt")
LEARNING_RATES = {"full": None, "lora": 5e-4, "adalora": 1e-3, "ia3": 3e-3, "adapter-houlsby": 5e-4,
                  "adapter-pfeiffer": 5e-4, "prefix": 1e-2, "prompt": 3e-2}
"""Learning rate per method; None keeps the task's (bench/accuracy.py's tuned full fine-tuning rate)."""
WITHIN_POINTS = {"lora": 1.5, "adalora": 1.5, "ia3": 1.5, "adapter-houlsby": 1.5, "adapter-pfeiffer": 1.5,
                 "prefix": 3.0}
MAX_TRAINED_SHARE = 0.05
QUICK_STEPS = 6


def lmforge_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.compress import CompressOptions, compress
    from lmforge.config import spec_from_dict
    from lmforge.pipeline import run_all
    from lmforge.rundir import RunDir

    start = time.perf_counter()
    metrics = run_all(spec_from_dict(job["spec"]), job["run_dir"], progress=False)
    train_seconds = time.perf_counter() - start
    run = RunDir(job["run_dir"])
    model_bytes = sum(p.stat().st_size for p in run.model_dir.rglob("*") if p.is_file())
    summary = compress(run, CompressOptions(only=("onnx-int8-dynamic",)))
    manifest = run.read_manifest()
    return {"metrics": metrics, "train": manifest.get("train", {}), "data": manifest.get("data", {}),
            "model_bytes": model_bytes, "compress": summary, "seconds": round(train_seconds, 2)}


def method_spec(base: dict[str, Any], method: str, quick: bool) -> dict[str, Any]:
    """The task's spec with ``train.method`` set and the method family's learning rate."""
    spec = copy.deepcopy(base)
    spec["name"] = f"{base['name']}-{method}"
    spec["train"]["method"] = method
    if LEARNING_RATES[method] is not None:
        spec["train"]["learning_rate"] = LEARNING_RATES[method]
    if quick:
        spec["train"]["max_steps"] = QUICK_STEPS
    return spec


def row(lm: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of one method's worker result."""
    m, tr, comp = lm["metrics"], lm["train"], lm["compress"]
    selected = comp["selected"]
    chosen = comp["variants"].get(selected, comp["baseline"])  # the fp32 model: the baseline
    total = tr.get("total_parameters") or 0
    return {
        "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n_test": m.get("n_test"),
        "trainable_parameters": tr.get("trainable_parameters"), "total_parameters": total,
        "trained_share": (tr.get("trainable_parameters") or 0) / total if total else None,
        "model_bytes": lm["model_bytes"], "train_seconds": tr.get("seconds"), "epochs_run": tr.get("epochs"),
        "examples_per_second": tr.get("examples_per_second"), "precision": tr.get("precision"),
        "peak_rss_bytes": lm["process"]["peak_rss_bytes"],
        "compressed_variant": selected, "compressed_accuracy": chosen.get("accuracy"),
        "compressed_batch_1_ms": chosen["batch_1_ms"], "fp32_batch_1_ms": comp["baseline"]["batch_1_ms"],
        "learning_rate": lm["spec"]["train"]["learning_rate"], "data_fingerprint": lm["data"].get("fingerprint"),
    }


def read_partial(path: Path) -> dict[str, dict[str, Any]]:
    """``{task: {method: {"spec", "row", "machine", "date"}}}`` kept by earlier runs (empty when none)."""
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def keep_partial(path: Path, task: str, method: str, spec: dict[str, Any], r: dict[str, Any]) -> None:
    """Add one finished row to the partial file (written whole, then renamed: never half-written)."""
    kept = read_partial(path)
    cpu = machine()
    kept.setdefault(task, {})[method] = {
        "spec": spec, "row": r, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {k: cpu.get(k) for k in ("cpu_model", "cores", "amx_bf16", "avx512_bf16")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def task_targets(task: str, rows: dict[str, dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """The targets of one task against its full fine-tuning row, and the summary lines."""
    targets, summary = [], []
    full = rows.get("full")
    for method, r in rows.items():
        gap = round(100 * (full["accuracy"] - r["accuracy"]), 2) if full else None
        summary.append({"metric": f"{task} {method} test accuracy", "lmforge": r["accuracy"],
                        "peer": full["accuracy"] if full else None, "ratio": None,
                        "points_below_full": gap, "trained_share": r["trained_share"]})
        if full and method in WITHIN_POINTS:
            targets.append(target(f"{task} {method}: points below full fine-tuning", gap, "<=",
                                  WITHIN_POINTS[method], unit="points"))
        if method in WITHIN_POINTS and method != "prefix" and r["trained_share"] is not None:
            targets.append(target(f"{task} {method}: share of parameters trained", r["trained_share"], "<=",
                                  MAX_TRAINED_SHARE))
    return targets, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"tiny subsets, {QUICK_STEPS} steps: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/peft_methods[-quick].json)")
    ap.add_argument("--tasks", nargs="+", choices=["banking77", "airline-tweets"],
                    default=["airline-tweets", "banking77"])
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the run directories (path is printed)")
    ap.add_argument("--partial", type=Path, help="finished rows kept between runs (default "
                    "bench/results/peft_methods-partial.json; in quick mode none unless given)")
    ap.add_argument("--fresh", action="store_true", help="train every row again, ignoring the kept ones")
    add_task_arguments(ap)  # bench/accuracy.py's task settings, at its defaults
    ap.add_argument("--worker", choices=["lmforge"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        result = lmforge_worker(job)
        result["spec"] = job["spec"]
        write_worker_result(job, result)
        return 0

    out = args.out or default_out(NAME, args.quick)
    partial = args.partial or (None if args.quick else RESULTS / f"{NAME}-partial.json")
    kept = {} if partial is None or args.fresh else read_partial(partial)
    reused: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-peft-"))
    results: dict[str, Any] = {}
    targets: list[dict] = []
    summary: list[dict] = []
    try:
        specs, notes = task_specs(args, workdir)
        for task, base in specs.items():
            rows: dict[str, dict[str, Any]] = {}
            for method in args.methods:
                spec = method_spec(base, method, args.quick)
                old = kept.get(task, {}).get(method)
                if old is not None and old["spec"] == spec:  # full mode: the shared datasets' paths, stable
                    rows[method] = {**old["row"], "machine": old["machine"], "date": old["date"]}
                    reused.append(f"{task} {method} ({old['date']}, {old['machine']['cpu_model']})")
                    log(f"{task} {method}: reusing the row of {old['date']} from {partial}")
                    continue
                run_dir = workdir / task / method
                log(f"{task} {method}: lr {spec['train']['learning_rate']} -> {run_dir}")
                lm = run_worker(__file__, "lmforge", {"spec": spec, "run_dir": str(run_dir)}, workdir,
                                tag=f"{task}-{method}")
                rows[method] = row(lm)
                if partial is not None:
                    keep_partial(partial, task, method, spec, rows[method])
                r = rows[method]
                log(f"{task} {method}: accuracy {r['accuracy']:.4f}, trained {r['trainable_parameters']} "
                    f"({(r['trained_share'] or 0):.2%}), {r['model_bytes'] / 1e6:.1f} MB, "
                    f"{r['examples_per_second']} ex/s, selected {r['compressed_variant']} "
                    f"at {r['compressed_batch_1_ms']} ms")
            prints = {r["data_fingerprint"] for r in rows.values()}
            if len(prints) > 1:
                raise RuntimeError(f"{task}: the methods saw different prepared data ({sorted(map(str, prints))})")
            results[task] = {"methods": rows, "spec": base}
            t, s = task_targets(task, rows)
            targets += t
            summary += s
    finally:
        leave_workdir(workdir, args.keep)
    if not results:
        log("nothing ran; no result written")
        return 1
    notes += [
        "Every method runs lmforge.pipeline.run_all on the same prepared split (fingerprints checked), with the "
        "task's epochs budget and early stopping (bench/accuracy.py's full-run settings) and the learning rate of "
        f"its family: {LEARNING_RATES} (None: the task's full fine-tuning rate).",
        "Latency: batch 1 of the variant `lmforge compress --only onnx-int8-dynamic` selects within a 1-point "
        "budget (the fp32 model when nothing is within budget).",
        "Prompt tuning has no target: it is reported as measured.",
    ]
    if reused:
        notes.append("Rows kept from earlier runs (their machine and date are in each row; compare speed, memory "
                     "and latency only between rows of one machine): " + "; ".join(reused) + ".")
    if args.quick:
        notes.append(f"QUICK MODE: tiny subsets, {QUICK_STEPS} steps; accuracies are meaningless, targets not expected.")
    parameters = {"seed": args.seed, "quick": args.quick, "tasks": list(results), "methods": list(args.methods),
                  "learning_rates": LEARNING_RATES}
    write_result(out, NAME, quick=args.quick, peer="full fine-tuning (lmforge)", parameters=parameters,
                 results=results, ratios={}, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
