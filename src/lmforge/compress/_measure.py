"""Measure a predictor on this machine and the run's test split: accuracy, agreement, latency, size.

Latency is end to end (texts in, probabilities out: tokenization, padding, the forward pass
and softmax), on test texts that pad to the split's typical (p50) token length, with the
backend's default threads. Each batch size gets warm-up runs, then timed repeats; the
median is reported, with the 90th percentile next to it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmforge.catalog import resolve_model
from lmforge.metrics import macro_f1
from lmforge.predict import Predictor

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext

__all__ = ["BATCH_SIZES", "measure", "model_size_bytes", "threads"]

BATCH_SIZES = (1, 32)
_WEIGHT_SUFFIXES = (".onnx", ".onnx.data", ".safetensors")


def model_size_bytes(folder: Path) -> int:
    """Bytes of the weight files in ``folder`` (ONNX graph + data, or safetensors); tokenizer excluded."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


def threads(backend: str) -> int | None:
    """Threads the backend computes with by default on this machine."""
    if backend == "torch":
        import torch

        return int(torch.get_num_threads())
    # ONNX Runtime defaults intra-op threads to the physical cores it may use.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _time(predictor: Predictor, batches: list[list[str]], warmup: int, repeats: int) -> dict[str, float]:
    for i in range(warmup):
        predictor.predict_proba(batches[i % len(batches)], batch_size=len(batches[0]))
    times = []
    for i in range(repeats):
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        predictor.predict_proba(batch, batch_size=len(batch))
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": round(float(np.median(times)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3)}


def latency(ctx: CompressContext, predictor: Predictor) -> dict[str, Any]:
    """Median and p90 milliseconds per call at batch 1 and 32, and throughput at 32."""
    opts = ctx.options
    out: dict[str, Any] = {}
    for size in BATCH_SIZES:
        # batch 1 cycles through 8 different texts of the typical length; batch 32 is one fixed batch
        batches = [[t] for t in ctx.latency_texts(8)] if size == 1 else [ctx.latency_texts(size)]
        stats = _time(predictor, batches, opts.warmup, opts.latency_repeats)
        out[f"batch_{size}_ms"] = stats["median_ms"]
        out[f"batch_{size}_p90_ms"] = stats["p90_ms"]
    out["throughput_batch_32"] = round(32 / (out["batch_32_ms"] / 1e3), 2)
    return out


def measure(ctx: CompressContext, predictor: Predictor, folder: Path | None) -> dict[str, Any]:
    """Every measured field of ``variant.json`` for one predictor.

    Args:
        ctx: the stage context (test split, fp32 reference, options).
        predictor: the variant (or the fp32 model) ready to predict.
        folder: where its weights are (for the size on disk); None for the fp32 model.
    """

    texts, y = ctx.test
    start = time.perf_counter()
    proba = predictor.predict_proba(texts, batch_size=ctx.options.eval_batch_size)
    eval_seconds = time.perf_counter() - start
    pred = proba.argmax(axis=1)
    if folder is None:  # this is the fp32 model itself: its probabilities are the reference
        ctx.__dict__.setdefault("fp32_test_proba", proba)
    ref = ctx.fp32_test_proba
    backend = getattr(predictor, "backend", "torch")
    if folder is None:
        size = fp32_size_bytes(ctx)
    else:
        size = model_size_bytes(folder)
    lat = latency(ctx, predictor)
    return {
        "size_bytes": int(size),
        "size_mb": round(size / 1e6, 3),
        "accuracy": round(float((pred == y).mean()), 6),
        "macro_f1": round(macro_f1(y, pred, len(ctx.labels)), 6),
        "agreement_with_fp32": round(float((pred == ref.argmax(axis=1)).mean()), 6),
        "max_abs_proba_diff_vs_fp32": round(float(np.abs(proba - ref).max()), 6),
        "n_test": int(len(y)),
        "latency": lat,
        "eval_seconds": round(eval_seconds, 3),
        "measured": {
            "what": "predict_proba end to end: tokenize, pad to the batch's longest, forward, softmax",
            "seq_len": ctx.typical_length,
            "seq_len_rule": "p50 of the test split's token lengths (special tokens included, truncated)",
            "batch_sizes": list(BATCH_SIZES),
            "warmup": ctx.options.warmup,
            "repeats": ctx.options.latency_repeats,
            "statistic": "median (p90 alongside)",
            "backend": backend,
            "threads": threads(backend),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }


def fp32_size_bytes(ctx: CompressContext) -> int:
    """Weights of the fp32 model on disk: model/*.safetensors (an adapter or modules run: base model + adapter)."""
    size = sum(p.stat().st_size for p in ctx.run.model_dir.glob("*.safetensors"))
    if ctx.is_adapter or ctx.has_modules:
        size += sum(p.stat().st_size for p in resolve_model(ctx.meta["base_model"]).glob("*.safetensors"))
    return size
