"""SFT speed: lmforge's LoRA fine-tuning of a causal LM against HF Trainer padding to max length.

The peer is TRL's ``SFTTrainer`` where TRL runs on this stack; here it does not install without
``datasets`` (and its dependency tree), which lmforge does not carry, so the peer is the recipe
TRL's users fell back on before padding-free batches: the Hugging Face ``Trainer`` + peft LoRA,
every example padded to ``max_length`` (``DataCollatorForSeq2Seq(padding="max_length")``).
Both contenders: the same model (``smollm2-135m``), the same prepared data (lmforge's prepare of
the packaged ``support-answers``, or the full Bitext set with ``--bitext``), the same examples
(the same chat template, prompt masking and EOS: ``lmforge.train.encode_example``), LoRA rank,
learning rate, batch size, evaluation schedule and seed.

Measured: real (non-padding) training tokens per second; the training time (evaluation
excluded, from each evaluation's arrival time minus every ``eval_runtime`` before it; each clock
starts when training is called, model load and tokenization included, and lmforge's keeps its
checkpoint writes) until the validation loss first reaches the lowest loss both reach (the higher
of the two bests; interpolated between evaluations), and until it reaches the peer's best; and
each process's peak RSS. The contenders see the same examples but not in the same order
(lmforge's sampler groups by length, the peer's shuffles), so a short run compares different batches.

    .venv/bin/python bench/sft_speed.py --quick     # tiny slice, exercises the code path
    .venv/bin/python bench/sft_speed.py             # the comparison (an hour or more on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    LMFORGE,
    SHARED_DATASETS,
    child_env,
    default_out,
    log,
    read_job,
    run_worker,
    target,
    write_result,
    write_worker_result,
)
from train_speed import LogTail

NAME = "sft_speed"
MODEL = "smollm2-135m"
SPEEDUP_TARGET = 1.5
BITEXT = SHARED_DATASETS / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"

FULL = {"max_examples": None, "max_length": 512, "batch_size": 8, "max_steps": 120, "eval_steps": 20,
        "learning_rate": 2e-4, "lora_r": 16}
QUICK = {"max_examples": 40, "max_length": 256, "batch_size": 2, "max_steps": 4, "eval_steps": 2,
         "learning_rate": 2e-4, "lora_r": 8}


def _spec(p: dict[str, Any], data: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "name": NAME, "task": "generate", "data": data,
        "model": {"name": MODEL, "max_length": p["max_length"]},
        "train": {"method": "lora", "max_steps": p["max_steps"], "eval_steps": p["eval_steps"],
                  "batch_size": p["batch_size"], "eval_batch_size": p["batch_size"],
                  "learning_rate": p["learning_rate"], "early_stopping_patience": None, "logging_steps": 1,
                  "seed": seed, "save_total_limit": 1, "lora": {"r": p["lora_r"], "alpha": 2 * p["lora_r"]}},
    }


def _points(records: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """``(arrival, log record)`` -> one point per evaluation: step, val loss, training seconds before it."""
    points, eval_seconds = [], 0.0
    for arrived, record in records:
        if "eval_loss" in record:
            eval_seconds += float(record.get("eval_runtime", 0.0))
            points.append({"step": record["step"], "val_loss": float(record["eval_loss"]),
                           "train_seconds": round(arrived - eval_seconds, 2)})
    return points


def lmforge_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.config import spec_from_dict
    from lmforge.rundir import RunDir
    from lmforge.train import train

    spec, run = spec_from_dict(job["spec"]), RunDir(job["run_dir"])
    t0 = time.perf_counter()
    tail = LogTail(run.logs_dir / "train.log", t0)
    tail.start()
    summary = train(spec, run, progress=False)
    return {"points": _points(tail.finish()), "train_tokens": summary["train_tokens"],
            "train_seconds_total": summary["seconds"]}


def padded_worker(job: dict[str, Any]) -> dict[str, Any]:
    """HF Trainer + peft LoRA, every example padded to max_length; the same examples and schedule."""
    import peft
    import transformers
    from torch.utils.data import Dataset

    from lmforge.catalog import resolve_model
    from lmforge.data import example_prompt, example_response, read_examples
    from lmforge.train import encode_example

    t0 = time.perf_counter()  # as lmforge's clock: from the call, model load and tokenization included
    path = resolve_model(MODEL)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    p, run = job["p"], Path(job["run_dir"])

    class Examples(Dataset):
        def __init__(self, split: str) -> None:
            self.items = []
            for r in read_examples(run, split):
                ids, labels, _, _ = encode_example(tokenizer, example_prompt(r), example_response(r), system=None,
                                                   limit=p["max_length"], truncate="error")
                self.items.append({"input_ids": ids, "labels": labels})

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> dict[str, list[int]]:
            return self.items[i]

    train_set, val_set = Examples("train"), Examples("val")
    transformers.set_seed(job["seed"])
    model = transformers.AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype="float32")
    model.config.use_cache = False
    model = peft.get_peft_model(model, peft.LoraConfig(
        task_type=peft.TaskType.CAUSAL_LM, r=p["lora_r"], lora_alpha=2 * p["lora_r"], lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    records: list[tuple[float, dict[str, Any]]] = []

    class Stamp(transformers.TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs:
                records.append((time.perf_counter() - t0, {"step": state.global_step, **logs}))

    args = transformers.TrainingArguments(
        output_dir=str(Path(job["workdir"]) / "padded-out"), per_device_train_batch_size=p["batch_size"],
        per_device_eval_batch_size=p["batch_size"], learning_rate=p["learning_rate"], max_steps=p["max_steps"],
        eval_strategy="steps", eval_steps=p["eval_steps"], save_strategy="no", logging_steps=1, report_to="none",
        seed=job["seed"], use_cpu=True, prediction_loss_only=True, disable_tqdm=True, warmup_steps=0.06,
        lr_scheduler_type="linear", weight_decay=0.01, dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",  # real tokens, as lmforge counts them
        bf16=job["precision"] == "bf16")  # the same autocast precision as lmforge's
    collator = transformers.DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=p["max_length"],
                                                   label_pad_token_id=-100)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                                   data_collator=collator, callbacks=[Stamp()])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"points": _points(records), "train_tokens": int(trainer.state.num_input_tokens_seen),
            "train_seconds_total": round(seconds, 2)}


def _seconds_to(points: list[dict[str, Any]], level: float) -> float | None:
    """Training seconds at which the validation loss first reaches ``level``, interpolated linearly
    between the two evaluations around the crossing (at the first evaluation when it is already
    there), so neither side is charged up to ``eval_steps`` of training past the crossing."""
    before = None
    for q in points:
        if q["val_loss"] <= level + 1e-9:
            if before is None or before["val_loss"] == q["val_loss"]:
                return q["train_seconds"]
            share = (before["val_loss"] - level) / (before["val_loss"] - q["val_loss"])
            return round(before["train_seconds"] + share * (q["train_seconds"] - before["train_seconds"]), 2)
        before = q
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny slice and a few steps: exercise the code path")
    ap.add_argument("--bitext", action="store_true", help="the full Bitext set from ../shared (default: support-answers)")
    ap.add_argument("--packing", action="store_true", help="lmforge packs each batch into one row")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/sft_speed[-quick].json)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="both contenders' autocast precision (auto: bf16 where the CPU has AMX or AVX512-BF16)")
    ap.add_argument("--worker", choices=["lmforge", "padded"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, lmforge_worker(job) if args.worker == "lmforge" else padded_worker(job))
        return 0

    p = dict(QUICK if args.quick else FULL)
    data: dict[str, Any] = {"seed": args.seed}
    if args.bitext:
        data.update(path=str(BITEXT), prompt_column="instruction", response_column="response")
    if p["max_examples"]:
        data["max_examples"] = p["max_examples"]
    spec = _spec(p, data, args.seed)
    spec["train"]["packing"] = args.packing
    from lmforge.train import resolve_precision

    precision = resolve_precision(args.precision)
    spec["train"]["precision"] = precision
    out = args.out or default_out(NAME, args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-sft-"))
    try:
        run_dir = workdir / "run"
        spec_path = workdir / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
        log(f"prepare -> {run_dir}")
        subprocess.run([str(LMFORGE), "prepare", str(spec_path), "--out", str(run_dir)], check=True, env=child_env())
        log("peer: HF Trainer + peft LoRA, padding to max_length")
        padded = run_worker(__file__, "padded", {"p": p, "run_dir": str(run_dir), "seed": args.seed,
                                                 "workdir": str(workdir), "precision": precision}, workdir)
        log("lmforge: lmforge.train.train (dynamic padding, length grouping" + (", packing)" if args.packing else ")"))
        lm = run_worker(__file__, "lmforge", {"spec": spec, "run_dir": str(run_dir)}, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    # The target: the lowest loss both reach in the same schedule (the higher of the two bests).
    # The peer's own best is reported too; a side that does not reach it in max_steps has no time.
    lm_best, peer_best = (min(q["val_loss"] for q in r["points"]) for r in (lm, padded))
    level = max(lm_best, peer_best)
    peer_t, lm_t = _seconds_to(padded["points"], level), _seconds_to(lm["points"], level)
    speedup = round(peer_t / lm_t, 3) if peer_t and lm_t else None
    lm_at_peer_best, peer_at_best = _seconds_to(lm["points"], peer_best), _seconds_to(padded["points"], peer_best)
    gap = {q["step"]: round(q["val_loss"] - r["val_loss"], 4)
           for q, r in zip(lm["points"], padded["points"], strict=False) if q["step"] == r["step"]}
    tps = {name: round(r["train_tokens"] / r["train_seconds_total"], 1) if r["train_seconds_total"] else None
           for name, r in (("lmforge", lm), ("padded", padded))}
    rss = {name: r["process"]["peak_rss_bytes"] for name, r in (("lmforge", lm), ("padded", padded))}
    ratios = {"time_to_loss_speedup": speedup,
              "time_to_peer_best_speedup": round(peer_at_best / lm_at_peer_best, 3)
              if peer_at_best and lm_at_peer_best else None,
              "tokens_per_second_ratio": round(tps["lmforge"] / tps["padded"], 3) if tps["lmforge"] and tps["padded"]
              else None,
              "peak_rss_ratio_peer_over_lmforge": round(rss["padded"] / rss["lmforge"], 3)}
    summary = [
        {"metric": f"train seconds to val loss {level:.4f} (both reach it)", "lmforge": lm_t, "peer": peer_t,
         "ratio": speedup},
        {"metric": f"train seconds to the peer's best, {peer_best:.4f}", "lmforge": lm_at_peer_best,
         "peer": peer_at_best, "ratio": ratios["time_to_peer_best_speedup"]},
        {"metric": f"val loss at step {max(gap) if gap else '-'}, lmforge minus peer",
         "lmforge": gap[max(gap)] if gap else None, "peer": 0.0, "ratio": None},
        {"metric": "real training tokens/s", "lmforge": tps["lmforge"], "peer": tps["padded"],
         "ratio": ratios["tokens_per_second_ratio"]},
        {"metric": "peak RSS (GB)", "lmforge": round(rss["lmforge"] / 1e9, 2), "peer": round(rss["padded"] / 1e9, 2),
         "ratio": ratios["peak_rss_ratio_peer_over_lmforge"]},
    ]
    notes = ["TRL is not installed: trl 1.16 needs `datasets`, which lmforge does not depend on; the peer is HF "
             "Trainer padding to max_length (the fallback the issue names).",
             "Both clocks exclude evaluation (each eval_runtime); lmforge's includes its checkpoint writes.",
             "The target loss is the lowest both reach in the same schedule (the higher of the two bests); each "
             "time is interpolated between the evaluations around its crossing. lmforge minus peer val loss per "
             f"step: {gap}.",
             f"Both train with {precision} autocast (the precision lmforge's `auto` picks on this CPU), so the "
             "ratio measures batching, not precision."]
    if args.quick:
        notes.append("Quick mode: a few steps on a tiny slice; the numbers only show the code path works.")
    write_result(out, NAME, quick=args.quick, peer="HF Trainer, padded", parameters={**p, "model": MODEL,
                 "data": "bitext" if args.bitext else "support-answers", "packing": args.packing, "seed": args.seed,
                 "precision": precision},
                 results={"lmforge": lm, "padded": padded, "level": level, "peer_best": peer_best,
                          "val_loss_gap_by_step": gap}, ratios=ratios,
                 targets=[target("time-to-loss speedup", speedup, ">=", SPEEDUP_TARGET, "x")], summary=summary,
                 notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
