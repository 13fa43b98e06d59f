"""The compress stage of a generative run: build each generator variant, measure it, select within ROUGE-L points.

The same contract as a classifier's (:mod:`lmforge.compress._stage`): user errors before
anything is written, each variant built in a temporary folder and renamed into
``compressed/<name>/`` once its model and ``variant.json`` are complete, ``baseline.json``,
``selected``, the report and the plot beside them, the summary in the manifest. What differs is
what is measured (:mod:`lmforge.compress._gen_measure`: tokens/s at batch 1 and 8, time to
first token, size, ROUGE-L and perplexity) and the budget's unit: points of ROUGE-L.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lmforge._extras import require
from lmforge.compress._gen_context import GenContext
from lmforge.compress._gen_measure import measure_generator
from lmforge.compress._options import CompressOptions
from lmforge.compress._register import GENERATOR_COMPRESSORS, GeneratorCompressor
from lmforge.compress._registry import get_generator_compressor, resolve_names
from lmforge.compress._report import plot_tradeoff, render_gen_report
from lmforge.compress._select import select_variant
from lmforge.compress._stage import PLOT, REPORT, read_variants
from lmforge.errors import ConfigError
from lmforge.predict import load_generator
from lmforge.rundir import (
    BASELINE,
    COMPRESSED,
    FP32,
    MODEL,
    SELECTED,
    VARIANT_META,
    WEIGHTS,
    RunDir,
    atomic_write_json,
    atomic_write_text,
)

__all__ = ["compress_generator"]

METRIC = "rouge_l"


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    lat = record["latency"]
    return {"size_mb": record["size_mb"], "rouge_l": record["rouge_l"], "perplexity": record["perplexity"],
            "tokens_per_s_batch_1": lat["tokens_per_s_batch_1"], "tokens_per_s_batch_8": lat["tokens_per_s_batch_8"],
            "ttft_ms": lat["ttft_ms"]}


def _build(ctx: GenContext, c: GeneratorCompressor) -> dict[str, Any]:
    with RunDir(ctx.compressed_dir).stage(c.name) as tmp:
        start = time.perf_counter()
        info = c.build(ctx, tmp)
        seconds = time.perf_counter() - start
        generator = load_generator(tmp)
        record = {
            "variant": c.name, "format": c.format, "kind": "causal-lm", "model_file": WEIGHTS, "source": c.source,
            "description": c.description, **measure_generator(ctx, generator, tmp), "build": info,
            "build_seconds": round(seconds, 2), "model_fingerprint": ctx.model_fingerprint,
            "options": ctx.options.to_dict(),
        }
        del generator
        atomic_write_json(tmp / VARIANT_META, record)
    return record


def compress_generator(run: RunDir, options: CompressOptions, tell: Callable[[str], None]) -> dict[str, Any]:
    """Build, measure and select the variants of a generative run (see :func:`lmforge.compress.compress`).

    Raises:
        ConfigError: an unknown compressor, or ``speed_by`` a classifier's (``batch_32``).
        RunDirError: the run has no trained causal LM.
        DataError: the test split is empty.
    """
    if options.speed_by not in ("batch_1", "batch_8"):
        raise ConfigError(f"--speed-by must be batch_1 or batch_8 for a generative run, got {options.speed_by!r}.")
    names = resolve_names(options.only, GENERATOR_COMPRESSORS)
    ctx = GenContext(run, options)
    compressors = [get_generator_compressor(n) for n in names]
    for module, extra in sorted({m for c in compressors for m in c.extras} | {("torch", "train")}):
        require(module, extra=extra, purpose="lmforge compress")
    plan, skipped = [], {}
    for c in compressors:
        why = c.skip_reason(ctx)
        if why:
            skipped[c.name] = why
            tell(f"skip {c.name}: {why}")
        else:
            plan.append(c)
    examples = ctx.examples  # an empty test split is refused before anything is built
    tell(f"measuring fp32 ({len(examples)} test prompts, {options.gen_timing_tokens} new tokens per timed answer)")
    baseline = {"variant": FP32, "format": "torch", "kind": "causal-lm", "path": MODEL,
                **measure_generator(ctx, ctx.fp32, None), "model_fingerprint": ctx.model_fingerprint}
    built = []
    for c in plan:
        tell(f"building {c.name} ({c.description})")
        record = _build(ctx, c)
        built.append(c.name)
        lat = record["latency"]
        tell(f"  {c.name}: {record['size_mb']:.1f} MB, {lat['tokens_per_s_batch_1']:.1f} tokens/s @1, "
             f"{lat['tokens_per_s_batch_8']:.1f} @8, TTFT {lat['ttft_ms']:.1f} ms, ROUGE-L {record['rouge_l']:.4f} "
             f"(fp32 {baseline['rouge_l']:.4f})")
    variants = read_variants(ctx.compressed_dir, ctx.model_fingerprint)
    selection = select_variant(baseline, variants, options.budget, options.speed_by, metric=METRIC)
    selected_path = MODEL if selection["variant"] == FP32 else f"{COMPRESSED}/{selection['variant']}"
    atomic_write_json(ctx.compressed_dir / BASELINE, baseline)
    atomic_write_json(ctx.compressed_dir / SELECTED, {
        "variant": selection["variant"], "path": selected_path, "reason": selection["reason"],
        "budget": options.budget, "speed_by": options.speed_by, "metric": METRIC,
    })
    atomic_write_text(ctx.compressed_dir / REPORT,
                      render_gen_report(baseline, variants, selection, skipped, options.to_dict()))
    plot_tradeoff(baseline, variants, selection["variant"], ctx.compressed_dir / PLOT, metric=METRIC)
    tell(f"selected {selection['variant']}: {selection['reason']}")
    summary = {
        "kind": "causal-lm", "metric": METRIC, "budget": options.budget, "speed_by": options.speed_by,
        "selected": selection["variant"], "reason": selection["reason"], "baseline": _summary(baseline),
        "variants": {name: _summary(rec) for name, rec in variants.items()}, "built": built, "skipped": skipped,
    }
    run.update_manifest(compress=summary)
    return summary
