"""Inference speed, size and accuracy: every lmforge compressed variant against its peers, one run.

Contenders, each timed in its own child process, one after another, on the same texts:

- lmforge variants: every folder under ``RUN/compressed/`` (``lmforge compress`` builds
  them first when the run has none), loaded through ``lmforge.predict.load_predictor``;
- **PyTorch fp32 eager**: the run's model through ``AutoModelForSequenceClassification``,
  batches padded to their longest text (the fair eager baseline; the ratios use it);
- **PyTorch fp32 eager, classic padding**: the same, tokenized like the classic recipe
  (``padding="max_length"``, 512 tokens), which is what a hand-written script does;
- **Hugging Face pipeline**: ``pipeline("text-classification", top_k=None)``;
- **Optimum ORTQuantizer**: dynamic int8 (avx2 config, per channel) through optimum, only with
  ``--optimum-python`` (an interpreter whose environment has ``optimum-onnx[onnxruntime]``;
  it downgrades transformers to 4.57, so it never goes into lmforge's venv). A throwaway venv
  that borrows lmforge's torch works (pip does not touch packages outside its own venv)::

      python3.11 -m venv /tmp/optvenv
      echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/optvenv/lib/python3.11/site-packages/zz.pth
      /tmp/optvenv/bin/pip install "optimum-onnx[onnxruntime]"

  Without it the result says why the peer was left out.

Latency: texts from the run's test split that pad to its typical (p50) token length; batch
1 cycles through 8 such texts, batch 32 is 32 of them; warm-up, then the median of timed
calls (end to end: tokenize, forward, softmax). Accuracy and agreement come from each
variant's ``variant.json`` (scored by ``lmforge compress`` on the whole test split).
GFLOP/s = FLOPs of one forward at the typical length x examples/s at batch 32, against this
machine's fp32 matmul peak (torch.mm, 2048^2, default threads).

    .venv/bin/python bench/inference.py --quick           # tiny run made here, ~3 min
    .venv/bin/python bench/inference.py --run runs/demo   # a trained run (compressed if needed)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    REPO,
    default_out,
    leave_workdir,
    lmforge,
    log,
    read_job,
    run_child,
    run_worker,
    target,
    tiny_run,
    write_result,
    write_worker_result,
)

NAME = "inference"
EAGER = "pytorch-eager"
TARGETS = {"throughput_x": 6.0, "latency_x": 4.0, "accuracy_points": 1.0, "size_ratio": 0.30,
           "size_points": 0.5, "distilled_x": 2.0, "distilled_points": 1.5}
FULL = {"warmup": 5, "repeats": 30}
QUICK = {"warmup": 1, "repeats": 3}


# -- timing (runs in the workers) ------------------------------------------------------------------
def _time(fn: Any, batches: list[list[str]], warmup: int, repeats: int) -> float:
    for i in range(warmup):
        fn(batches[i % len(batches)])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(batches[i % len(batches)])
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


def _latency(fn: Any, job: dict[str, Any]) -> dict[str, Any]:
    b1 = _time(fn, [[t] for t in job["texts_1"]], job["warmup"], job["repeats"])
    b32 = _time(fn, [job["texts_32"]], job["warmup"], job["repeats"])
    return {"batch_1_ms": b1, "batch_32_ms": b32, "throughput_batch_32": round(32 / (b32 / 1e3), 2)}


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def worker(role: str, job: dict[str, Any]) -> dict[str, Any]:
    if role == "variant":
        from lmforge.predict import load_predictor

        p = load_predictor(job["run"], job["variant"])
        out = _latency(lambda texts: p.predict_proba(texts, batch_size=len(texts)), job)
    elif role in ("eager", "classic"):
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        model_dir = Path(job["run"]) / "model"
        tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        pad = {"padding": "max_length", "max_length": 512} if role == "classic" else \
            {"padding": True, "max_length": job["max_length"]}

        def run(texts: list[str]) -> Any:
            with torch.inference_mode():
                enc = tok(texts, truncation=True, return_tensors="pt", **pad)
                return torch.softmax(model(**enc).logits, dim=-1).numpy()

        out = _latency(run, job)
    elif role == "pipeline":
        import transformers

        transformers.logging.set_verbosity_error()
        model_dir = str(Path(job["run"]) / "model")
        pipe = transformers.pipeline("text-classification", model=model_dir, tokenizer=model_dir, top_k=None,
                                     device="cpu")
        out = _latency(lambda texts: pipe(texts, batch_size=len(texts), truncation=True,
                                          max_length=job["max_length"]), job)
    elif role == "peak":
        import torch

        best: dict[int, float] = {}
        for n in (1024, 2048, 3072):
            a, b = torch.randn(n, n), torch.randn(n, n)
            torch.mm(a, b)
            times = []
            for _ in range(10):
                start = time.perf_counter()
                torch.mm(a, b)
                times.append(time.perf_counter() - start)
            best[n] = round(2 * n**3 / min(times) / 1e9, 2)
        out = {"fp32_matmul_gflops": max(best.values()), "by_size": best,
               "how": "torch.mm on n x n fp32 matrices, default threads, best of 10 calls, best size"}
    else:
        raise ValueError(role)
    out["threads"] = _torch_threads()
    return out


OPTIMUM_WORKER = """
import json, statistics, sys, time, tempfile
from pathlib import Path
job = json.loads(Path(sys.argv[1]).read_text())
from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
from transformers import AutoTokenizer
import numpy as np
tmp = Path(tempfile.mkdtemp())
model = ORTModelForSequenceClassification.from_pretrained(Path(job["run"]) / "model", export=True)
model.save_pretrained(tmp / "fp32")
q = ORTQuantizer.from_pretrained(tmp / "fp32")
q.quantize(save_dir=tmp / "int8", quantization_config=AutoQuantizationConfig.avx2(is_static=False, per_channel=True))
m = ORTModelForSequenceClassification.from_pretrained(tmp / "int8")
tok = AutoTokenizer.from_pretrained(Path(job["run"]) / "model")
def run(texts):
    enc = tok(texts, truncation=True, max_length=job["max_length"], padding=True, return_tensors="np")
    return m(**enc).logits
def timed(batches):
    for i in range(job["warmup"]): run(batches[i % len(batches)])
    ts = []
    for i in range(job["repeats"]):
        s = time.perf_counter(); run(batches[i % len(batches)]); ts.append((time.perf_counter() - s) * 1e3)
    return round(statistics.median(ts), 3)
b1 = timed([[t] for t in job["texts_1"]]); b32 = timed([job["texts_32"]])
size = sum(p.stat().st_size for p in (tmp / "int8").glob("*.onnx"))
import importlib.metadata as md
versions = {d: md.version(d) for d in ("optimum", "optimum-onnx", "transformers", "onnxruntime", "torch")}
Path(job["result_path"]).write_text(json.dumps({"batch_1_ms": b1, "batch_32_ms": b32,
    "throughput_batch_32": round(32 / (b32 / 1e3), 2), "size_bytes": size, "versions": versions}))
"""


def optimum_contender(python: str | None, job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Optimum's ORTQuantizer (dynamic int8, avx2 config) in its own interpreter, or why it was left out."""
    if not python:
        return {"left_out": "optimum[onnxruntime] pins transformers<4.58 and downgrades lmforge's 5.x stack "
                "(measured: 5.24 -> 4.57.6), so it is not installed in lmforge's venv; pass --optimum-python "
                "with an interpreter from a separate environment that has it to include this peer"}
    script, job_path = workdir / "optimum_worker.py", workdir / "job-optimum.json"
    result_path = workdir / "result-optimum.json"
    script.write_text(OPTIMUM_WORKER, encoding="utf-8")
    job_path.write_text(json.dumps({**job, "result_path": str(result_path)}), encoding="utf-8")
    stats = run_child([python, str(script), str(job_path)], timeout=1800, log=workdir / "optimum.log")
    if stats["returncode"] != 0 or not result_path.exists():
        tail = (workdir / "optimum.log").read_text(encoding="utf-8", errors="replace")[-600:]
        return {"left_out": f"optimum worker failed (exit {stats['returncode']}): {tail}"}
    return {**json.loads(result_path.read_text(encoding="utf-8")), "process": stats}


# -- the run directory -----------------------------------------------------------------------------
def quick_run(workdir: Path) -> Path:
    """A tiny airline-tweets run, trained a few steps and compressed with short settings."""
    run = tiny_run(workdir, max_examples=400, max_steps=12)
    lmforge("compress", str(run), "--only", "onnx-fp32,onnx-int8-dynamic,onnx-int8-static,distilled-int8",
            "--distill-steps", "10", "--calibration-size", "32", "--repeats", "5")
    return run


def ensure_compressed(run: Path) -> None:
    if (run / "compressed" / "baseline.json").is_file():
        return
    log(f"{run} has no compressed variants: running lmforge compress (default options)")
    lmforge("compress", str(run), timeout=7200)


def read_variants(run: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((run / "compressed").glob("*/variant.json")):
        out[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


# -- targets and tables ----------------------------------------------------------------------------
def _drop(base: dict[str, Any], rec: dict[str, Any]) -> float:
    return (base["accuracy"] - rec["accuracy"]) * 100


def evaluate_targets(results: dict[str, Any], variants: dict[str, dict[str, Any]],
                     baseline: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    eager = results[EAGER]
    ratios: dict[str, Any] = {}
    for name in variants:
        r = results[name]
        ratios[name] = {
            "throughput_vs_eager": round(r["throughput_batch_32"] / eager["throughput_batch_32"], 3),
            "latency_b1_vs_eager": round(eager["batch_1_ms"] / r["batch_1_ms"], 3),
            "throughput_vs_pipeline": round(r["throughput_batch_32"] / results["hf-pipeline"]["throughput_batch_32"],
                                            3),
            "size_vs_fp32": round(variants[name]["size_bytes"] / baseline["size_bytes"], 4),
            "accuracy_drop_points": round(_drop(baseline, variants[name]), 3),
        }
    ok1 = [n for n in variants if ratios[n]["accuracy_drop_points"] <= TARGETS["accuracy_points"]]
    best_tp = max((ratios[n]["throughput_vs_eager"] for n in ok1), default=None)
    best_lat = max((ratios[n]["latency_b1_vs_eager"] for n in ok1), default=None)
    small = [n for n in variants if ("int8" in n or "bf16" in n)
             and ratios[n]["accuracy_drop_points"] <= TARGETS["size_points"]]
    best_size = min((ratios[n]["size_vs_fp32"] for n in small), default=None)
    dist = ratios.get("distilled")
    dist_x = dist["throughput_vs_eager"] if dist and dist["accuracy_drop_points"] <= TARGETS["distilled_points"] \
        else None
    targets = [
        target("best variant within 1 point: throughput at batch 32 vs PyTorch fp32 eager", best_tp, ">=",
               TARGETS["throughput_x"], "x"),
        target("best variant within 1 point: latency at batch 1, PyTorch fp32 eager / variant", best_lat, ">=",
               TARGETS["latency_x"], "x"),
        target("smallest int8/bf16 variant within 0.5 points: size / fp32 size", best_size, "<=",
               TARGETS["size_ratio"]),
        target("distilled student within 1.5 points: throughput at batch 32 vs PyTorch fp32 eager", dist_x, ">=",
               TARGETS["distilled_x"], "x"),
    ]
    return ratios, targets


def table(results: dict[str, Any], variants: dict[str, dict[str, Any]], baseline: dict[str, Any],
          peak: float, gflop: dict[str, float]) -> str:
    eager, pipe = results[EAGER], results["hf-pipeline"]
    lines = ["| contender | size MB | batch 1 ms | batch 32 ms | ex/s @32 | vs eager @32 | vs eager @1 "
             "| vs pipeline @32 | accuracy | Δ points | GFLOP/s (% of peak) | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        if "left_out" in r:
            lines.append(f"| {name} | left out: {r['left_out'][:90]}... |" + " |" * 11)
            continue
        rec = variants.get(name, baseline if name in (EAGER, "pytorch-eager-classic", "hf-pipeline") else None)
        size = (rec or r)["size_bytes"] / 1e6 if (rec or r).get("size_bytes") else float("nan")
        delta = -_drop(baseline, rec) if rec else 0.0
        acc = f"{rec['accuracy']:.4f} | {'0.00' if abs(delta) < 0.005 else f'{delta:+.2f}'}" if rec else "— | —"
        # the classic recipe computes over 512 padded tokens, not the typical length: its useful work is shown
        per = gflop.get(name)
        g = per * r["throughput_batch_32"] if per else None
        perf = f"{g:.1f} ({100 * g / peak:.0f} %)" if g else "—"
        rss = r.get("process", {}).get("peak_rss_bytes", 0) / 1e6
        lines.append(
            f"| {name} | {size:.1f} | {r['batch_1_ms']:.2f} | {r['batch_32_ms']:.1f} | {r['throughput_batch_32']:.0f} "
            f"| {r['throughput_batch_32'] / eager['throughput_batch_32']:.2f}x "
            f"| {eager['batch_1_ms'] / r['batch_1_ms']:.2f}x | {r['throughput_batch_32'] / pipe['throughput_batch_32']:.2f}x "
            f"| {acc} | {perf} | {rss:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="make a tiny run here and time it briefly (~3 min)")
    ap.add_argument("--run", type=Path, help="trained run directory (full mode; compressed first if needed)")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/inference[-quick].json)")
    ap.add_argument("--repeats", type=int, help="timed calls per batch size")
    ap.add_argument("--optimum-python", help="interpreter of an environment with optimum[onnxruntime]")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, worker(args.worker, job))
        return 0
    if not args.quick and args.run is None:
        ap.error("give --run RUN_DIR (a trained run) or --quick")

    p = dict(QUICK if args.quick else FULL)
    if args.repeats:
        p["repeats"] = args.repeats
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-inference-"))
    try:
        run = quick_run(workdir) if args.quick else args.run.resolve()
        if not args.quick:
            ensure_compressed(run)
        sys.path.insert(0, str(REPO / "src"))
        from lmforge.compress import CompressContext, CompressOptions
        from lmforge.rundir import RunDir

        ctx = CompressContext(RunDir(run), CompressOptions())
        baseline = json.loads((run / "compressed" / "baseline.json").read_text(encoding="utf-8"))
        variants = read_variants(run)
        job = {"run": str(run), "texts_1": ctx.latency_texts(8), "texts_32": ctx.latency_texts(32),
               "max_length": ctx.max_length, "warmup": p["warmup"], "repeats": p["repeats"]}
        results: dict[str, Any] = {}
        log("matmul peak")
        peak = run_worker(__file__, "peak", {}, workdir)
        for role, name in (("eager", EAGER), ("classic", "pytorch-eager-classic"), ("pipeline", "hf-pipeline")):
            log(name)
            results[name] = run_worker(__file__, role, job, workdir, tag=name)
        for name in variants:
            log(f"lmforge {name}")
            results[name] = run_worker(__file__, "variant", {**job, "variant": name}, workdir, tag=name)
        log("optimum ORTQuantizer")
        results["optimum-ortquantizer"] = optimum_contender(args.optimum_python, job, workdir)
        selected = json.loads((run / "compressed" / "selected").read_text(encoding="utf-8"))
    finally:
        leave_workdir(workdir, args.keep)

    # FLOPs of one forward at the typical length; the fp32 model's for the peers (same network)
    gflop = {name: rec["build"].get("gflop_per_example") for name, rec in variants.items()}
    for name in (EAGER, "pytorch-eager-classic", "hf-pipeline", "optimum-ortquantizer"):
        gflop[name] = baseline["gflop_per_example"]
    for name, r in results.items():
        if gflop.get(name) and "throughput_batch_32" in r:
            r["achieved_gflops"] = round(gflop[name] * r["throughput_batch_32"], 2)
            r["percent_of_fp32_matmul_peak"] = round(100 * r["achieved_gflops"] / peak["fp32_matmul_gflops"], 1)
    ratios, targets = evaluate_targets(results, variants, baseline)
    fastest = max(variants, key=lambda n: ratios[n]["throughput_vs_eager"]) if variants else None
    eager = results[EAGER]
    summary = [
        {"metric": "PyTorch fp32 eager: examples/s at batch 32", "lmforge": None, "peer": eager["throughput_batch_32"],
         "ratio": None},
    ]
    for name in variants:
        r = results[name]
        summary.append({"metric": f"{name}: examples/s at batch 32 (vs eager)", "lmforge": r["throughput_batch_32"],
                        "peer": eager["throughput_batch_32"], "ratio": ratios[name]["throughput_vs_eager"]})
        summary.append({"metric": f"{name}: batch 1 ms (eager / variant)", "lmforge": r["batch_1_ms"],
                        "peer": eager["batch_1_ms"], "ratio": ratios[name]["latency_b1_vs_eager"]})
    md = table(results, variants, baseline, peak["fp32_matmul_gflops"], gflop)
    notes = [
        f"Latency at the test split's typical length ({ctx.typical_length} tokens), end to end, median of "
        f"{p['repeats']} calls after {p['warmup']} warm-up calls, default threads; each contender in its own process.",
        "Accuracy and agreement: from each variant.json (lmforge compress scored the whole test split); the eager "
        "and pipeline peers run the fp32 model, so their accuracy is fp32's.",
        f"GFLOP/s counts the fp32-equivalent FLOPs of one forward at the typical length; fp32 matmul peak "
        f"{peak['fp32_matmul_gflops']} GFLOP/s ({peak['how']}). int8 variants do the same work in int8, so "
        "they can pass the fp32 peak; torch variants built before FLOPs were recorded show none.",
        "The distilled student target is checked on the PyTorch student at batch 32 (strict); its batch 1 ratio "
        "and its ONNX int8 export (distilled-int8) are in the table.",
        "pytorch-eager-classic pads to 512 like the classic training recipe; the ratios use pytorch-eager "
        "(padding to the batch's longest), the stricter baseline.",
    ]
    write_result(
        args.out or default_out(NAME, args.quick), NAME, quick=args.quick, peer="PyTorch fp32 eager",
        parameters={**p, "run": str(run), "typical_length": ctx.typical_length, "n_test": baseline["n_test"],
                    "selected": selected},
        results={"contenders": results, "matmul_peak": peak, "variants": {
            n: {k: v[k] for k in ("size_bytes", "accuracy", "macro_f1", "agreement_with_fp32")} | {
                "gflop_per_example": gflop[n]} for n, v in variants.items()},
            "baseline": {k: baseline[k] for k in ("size_bytes", "accuracy", "macro_f1", "gflop_per_example")},
            "fastest_variant": fastest, "table_markdown": md},
        ratios=ratios, targets=targets, summary=summary, notes=notes,
    )
    print("\n" + md)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
