"""Measure a generator on this machine and the run's test split: quality, speed, size.

Quality is :func:`lmforge.evaluate.score_answers` on greedy answers to the first
``gen_max_test`` test prompts (ROUGE-L, chrF, BLEU, stop rate, and the perplexity of the
reference answers), as the evaluate stage scores a generative run. Speed is end to end
(prompts in, text out: rendering, tokenizing, prefill, the KV-cached decode loop, detokenizing):

- tokens/s at batch 1: one prompt answered with ``gen_timing_tokens`` new tokens (greedy);
- tokens/s at batch 8: eight prompts decoded together, all their new tokens over the wall time;
- time to first token: one prompt answered with one new token (prefill + one step).

Each is the median of ``gen_repeats`` timed runs after warm-up. ``latency.batch_N_ms`` is the
milliseconds per generated token at batch N (``1000 / tokens_per_s``): what selection compares.
An answer that ends early (end-of-sequence) counts the tokens it made.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmforge.catalog import resolve_model
from lmforge.compress._measure import model_size_bytes, threads
from lmforge.evaluate import score_answers
from lmforge.predict import Generator

if TYPE_CHECKING:
    from lmforge.compress._gen_context import GenContext

__all__ = ["GEN_BATCH_SIZES", "measure_generator", "speed"]

GEN_BATCH_SIZES = (1, 8)


def _tokens_per_s(generator: Generator, prompts: list[Any], new_tokens: int) -> float:
    start = time.perf_counter()
    outs = generator.generate(prompts, max_new_tokens=new_tokens, temperature=0.0)
    seconds = time.perf_counter() - start
    return sum(o.completion_tokens for o in outs) / seconds


def speed(ctx: GenContext, generator: Generator) -> dict[str, Any]:
    """``tokens_per_s_batch_{1,8}``, ``batch_{1,8}_ms`` (per token), ``ttft_ms`` and their p90s."""
    opts = ctx.options
    n = opts.gen_timing_tokens
    eight = ctx.timing_prompts(8)
    batch_size = getattr(generator, "batch_size", None)
    if batch_size is not None and batch_size < 8:
        generator.batch_size = 8  # type: ignore[attr-defined]  # batch 8 means one decode of eight rows
    for i in range(opts.warmup):
        generator.generate([eight[i % 8]], max_new_tokens=min(4, n), temperature=0.0)
    out: dict[str, Any] = {}
    for size in GEN_BATCH_SIZES:
        rates = [_tokens_per_s(generator, [eight[i % 8]] if size == 1 else eight, n) for i in range(opts.gen_repeats)]
        rate = float(np.median(rates))
        out[f"tokens_per_s_batch_{size}"] = round(rate, 2)
        out[f"batch_{size}_ms"] = round(1e3 / rate, 3)
        out[f"batch_{size}_p90_ms"] = round(1e3 / float(np.percentile(rates, 10)), 3)  # the slow tail
    firsts = []
    for i in range(opts.gen_repeats):
        start = time.perf_counter()
        generator.generate([eight[i % 8]], max_new_tokens=1, temperature=0.0)
        firsts.append((time.perf_counter() - start) * 1e3)
    out["ttft_ms"] = round(float(np.median(firsts)), 3)
    out["ttft_p90_ms"] = round(float(np.percentile(firsts, 90)), 3)
    if batch_size is not None:
        generator.batch_size = batch_size  # type: ignore[attr-defined]
    return out


def measure_generator(ctx: GenContext, generator: Generator, folder: Path | None) -> dict[str, Any]:
    """Every measured field of a generative variant's ``variant.json``.

    Args:
        ctx: the stage context (test examples, options).
        generator: the variant (or the fp32 model).
        folder: where its weights are (for the size on disk); None for the fp32 model.
    """
    opts = ctx.options
    prompts = [e.prompt for e in ctx.examples]
    references = [e.reference for e in ctx.examples]
    start = time.perf_counter()
    outs = generator.generate(prompts, max_new_tokens=opts.gen_max_new_tokens, temperature=0.0)
    logliks = generator.loglikelihood(prompts, references)
    eval_seconds = time.perf_counter() - start
    scores = score_answers([o.text for o in outs], references, finish_reasons=[o.finish_reason for o in outs],
                           token_counts=[o.completion_tokens for o in outs], logliks=logliks)
    size = _fp32_size(ctx) if folder is None else model_size_bytes(folder)
    return {
        "size_bytes": int(size),
        "size_mb": round(size / 1e6, 3),
        **{k: scores[k] for k in ("rouge_l", "perplexity", "chrf", "bleu", "stop_rate", "n_test")},
        "latency": speed(ctx, generator),
        "eval_seconds": round(eval_seconds, 3),
        "measured": {
            "what": "generate() end to end: render, tokenize, prefill, KV-cached greedy decode, detokenize",
            "new_tokens": opts.gen_timing_tokens,
            "batch_sizes": list(GEN_BATCH_SIZES),
            "warmup": opts.warmup,
            "repeats": opts.gen_repeats,
            "statistic": "median (p90 alongside)",
            "quality": f"greedy answers of at most {opts.gen_max_new_tokens} tokens to the first "
                       f"{len(prompts)} test prompts",
            "backend": "torch",
            "threads": threads("torch"),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }


def _fp32_size(ctx: GenContext) -> int:
    """Weights of the fp32 model on disk: ``model/*.safetensors`` (an adapter run: base model + adapter)."""
    size = sum(p.stat().st_size for p in ctx.run.model_dir.glob("*.safetensors"))
    if ctx.is_adapter:
        size += sum(p.stat().st_size for p in resolve_model(ctx.meta["base_model"]).glob("*.safetensors"))
    return size
