"""SFT quality: fine-tuned SmolLM2-135M against its base model and a retrieval baseline, same test split.

The Bitext customer-support set (``../shared/datasets/bitext_customer_support``: 4,514 question /
answer pairs, 27 intents) goes through lmforge's whole pipeline (``lmforge.pipeline.run_all``:
prepare with a seeded split, LoRA SFT, ``evaluate_generation``) in a child process. The
evaluation scores three answerers on the same test prompts with the same functions: the
fine-tuned model, the base model before fine-tuning (same prompts, same system prompt, greedy),
and a retrieval baseline answering with the training response of the nearest training prompt
(TF-IDF cosine). Targets: fine-tuned ROUGE-L above both baselines, and at least 98 % of the
fine-tuned answers ending on their own before ``max_new_tokens``.

    .venv/bin/python bench/sft_quality.py --quick   # 120 pairs, 2 steps: exercises the code path
    .venv/bin/python bench/sft_quality.py           # the whole set, 2 epochs, 200 test prompts (~132 min)
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

NAME = "sft_quality"
MODEL = "smollm2-135m"
BITEXT = SHARED_DATASETS / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
STOP_TARGET = 0.98
SYSTEM = "You are a customer-support assistant. Answer the customer's request helpfully and concisely."


def lmforge_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.config import spec_from_dict
    from lmforge.pipeline import run_all
    from lmforge.rundir import RunDir

    start = time.perf_counter()
    metrics = run_all(spec_from_dict(job["spec"]), job["run_dir"], progress=False)
    manifest = RunDir(job["run_dir"]).read_manifest()
    return {"metrics": metrics, "train": manifest.get("train", {}), "data": manifest.get("data", {}),
            "seconds": round(time.perf_counter() - start, 2)}


def sample_pairs(dst: Path, n: int, seed: int) -> Path:
    """A seeded sample of ``n`` Bitext rows (question and answer columns only), for quick runs."""
    with open(BITEXT, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))]
    with open(dst, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "response"])
        writer.writeheader()
        writer.writerows({"instruction": r["instruction"], "response": r["response"]} for r in rows)
    return dst


def build_spec(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = sample_pairs(workdir / "bitext-sample.csv", 120, args.seed) if args.quick else BITEXT
    train: dict[str, Any] = {"method": "lora", "learning_rate": args.lr, "seed": args.seed}
    # quick: 2 steps of 4 pairs (4 steps of 8 at length 512 took 16 minutes on a loaded 2-core machine)
    train.update({"max_steps": 2, "batch_size": 4} if args.quick else {"epochs": args.epochs,
                                                                      "batch_size": args.batch_size})
    return {
        "name": "bench-sft-quality",
        "task": "generate",
        "data": {"path": str(path), "prompt_column": "instruction", "response_column": "response",
                 "system": SYSTEM, "seed": args.seed, "val_fraction": 0.05, "test_fraction": 0.1},
        "model": {"name": MODEL, "max_length": 384 if args.quick else args.max_length},
        "train": train,
        "evaluate": {"max_new_tokens": 24 if args.quick else args.max_new_tokens,
                     "max_test": 4 if args.quick else args.max_test, "batch_size": args.eval_batch_size},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="120 pairs, 2 steps, 4 test prompts: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/sft_quality[-quick].json)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512, help="prompt + answer tokens (Bitext answers: p98 ~260)")
    ap.add_argument("--max-new-tokens", type=int, default=384,
                    help="answers' token limit; the longest 2 %% of Bitext answers are ~260 tokens")
    ap.add_argument("--max-test", type=int, default=200, help="test prompts answered (of ~450)")
    ap.add_argument("--eval-batch-size", type=int, default=16, help="prompts per generate call")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (path is printed)")
    ap.add_argument("--worker", choices=["lmforge"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, lmforge_worker(job))
        return 0
    if not BITEXT.is_file():
        log(f"{BITEXT} is missing (the shared datasets are not next to this clone); nothing to run")
        return 1

    out = args.out or default_out(NAME, args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-sft-"))
    try:
        spec = build_spec(args, workdir)
        run_dir = workdir / "run"
        log(f"lmforge run_all -> {run_dir} ({MODEL}, LoRA, {spec['train']})")
        lm = run_worker(__file__, "lmforge", {"spec": spec, "run_dir": str(run_dir)}, workdir)
    finally:
        leave_workdir(workdir, args.keep)

    m, tr = lm["metrics"], lm["train"]
    base, nearest = m["baselines"]["base_model"], m["baselines"]["retrieval"]
    results = {
        "fine_tuned": {k: m[k] for k in ("rouge_l", "chrf", "bleu", "exact_match", "perplexity", "stop_rate",
                                         "mean_length", "n_test", "pii")},
        "base_model": base,
        "retrieval": nearest,
        "generation": m["generation"],
        "train": tr,
        "data": lm["data"],
        "pipeline_seconds": lm["seconds"],
        "peak_rss_bytes": lm["process"]["peak_rss_bytes"],
    }
    ratios = {
        "rouge_l_vs_base_model": m["rouge_l"] / base["rouge_l"] if base["rouge_l"] else None,
        "rouge_l_vs_retrieval": m["rouge_l"] / nearest["rouge_l"] if nearest["rouge_l"] else None,
    }
    targets = [
        target("fine-tuned ROUGE-L minus base model's", round(m["rouge_l"] - base["rouge_l"], 4), ">=", 1e-4),
        target("fine-tuned ROUGE-L minus retrieval's", round(m["rouge_l"] - nearest["rouge_l"], 4), ">=", 1e-4),
        target("fine-tuned stop rate", m["stop_rate"], ">=", STOP_TARGET),
    ]
    summary = [
        {"metric": "ROUGE-L F (vs base model)", "lmforge": m["rouge_l"], "peer": base["rouge_l"],
         "ratio": ratios["rouge_l_vs_base_model"]},
        {"metric": "ROUGE-L F (vs retrieval)", "lmforge": m["rouge_l"], "peer": nearest["rouge_l"],
         "ratio": ratios["rouge_l_vs_retrieval"]},
        {"metric": "chrF (vs base model)", "lmforge": m["chrf"], "peer": base["chrf"], "ratio": None},
        {"metric": "perplexity of references (vs base model)", "lmforge": m["perplexity"],
         "peer": base["perplexity"], "ratio": None},
        {"metric": "stop rate (vs base model)", "lmforge": m["stop_rate"], "peer": base["stop_rate"], "ratio": None},
    ]
    notes = [
        f"lmforge: LoRA SFT of {MODEL} through lmforge.pipeline.run_all on Bitext (seeded split, seed {args.seed}); "
        "evaluation on the first max_test test prompts, greedy decoding.",
        "Peers: the base model before fine-tuning (same prompts, same system prompt, same decoding) and a retrieval "
        "baseline (the training response of the nearest training prompt by TF-IDF cosine over words and character "
        "3-grams; no perplexity, stop rate 1 by construction).",
        "ROUGE-L F as rouge-score computes it (0-1); chrF and BLEU-4 as sacrebleu's corpus scores (0-100).",
    ]
    if args.quick:
        notes.append("QUICK MODE: 120 pairs, 2 steps of 4, 4 test prompts, 24 new tokens; scores are meaningless, "
                     "targets are not expected to be met.")
    parameters = {"model": MODEL, "seed": args.seed, "quick": args.quick, "spec": spec}
    write_result(out, NAME, quick=args.quick, peer="base model / retrieval", parameters=parameters,
                 results=results, ratios=ratios, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
