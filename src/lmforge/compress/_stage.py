"""The compress stage: build each variant, measure it here, select the fastest within the budget.

Every user error (no model, unknown compressor, unsupported architecture, calibration set
too small, bad budget, missing extra) is raised before anything is written. Each variant is
built in a temporary folder and renamed into ``compressed/<name>/`` only once its model
and ``variant.json`` are complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.compress._build import flops_per_example
from lmforge.compress._context import CompressContext
from lmforge.compress._measure import latency, measure
from lmforge.compress._options import CompressOptions
from lmforge.compress._register import Compressor
from lmforge.compress._registry import get_compressor, resolve_names
from lmforge.compress._report import plot_tradeoff, render_report
from lmforge.compress._select import select_variant
from lmforge.errors import ConfigError
from lmforge.predict import load_model_folder
from lmforge.rundir import (
    BASELINE,
    COMPRESSED,
    FP32,
    MODEL,
    ONNX_FILE,
    SELECTED,
    VARIANT_META,
    WEIGHTS,
    RunDir,
    atomic_write_json,
    atomic_write_text,
)

__all__ = ["PLOT", "REPORT", "compress", "read_variants"]

logger = logging.getLogger(__name__)

REPORT = "compression_report.md"
PLOT = "tradeoff.png"
_MODEL_FILES = {"onnx": ONNX_FILE, "torch": WEIGHTS}


def _check_extras(compressors: list[Compressor]) -> None:
    needed = {("torch", "train", "lmforge compress"), ("transformers", "train", "lmforge compress")}
    for c in compressors:
        needed |= {(module, extra, f"The {c.name} variant") for module, extra in c.extras}
    for module, extra, purpose in sorted(needed):
        require(module, extra=extra, purpose=purpose)


def read_variants(compressed_dir: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Every complete variant on disk (this run's and earlier ones), stale ones (built from weights
    whose fingerprint is not ``fingerprint``) flagged."""
    out: dict[str, dict[str, Any]] = {}
    if not compressed_dir.is_dir():
        return out
    for folder in sorted(compressed_dir.iterdir()):
        path = folder / VARIANT_META
        if folder.name.startswith(".") or not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.warning("ignoring %s: not valid JSON", path)
            continue
        record["stale"] = record.get("model_fingerprint") != fingerprint
        out[folder.name] = record
    return out


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    lat = record["latency"]
    return {
        "size_mb": record["size_mb"], "accuracy": record["accuracy"], "macro_f1": record["macro_f1"],
        "agreement_with_fp32": record["agreement_with_fp32"], "batch_1_ms": lat["batch_1_ms"],
        "batch_32_ms": lat["batch_32_ms"],
    }


def _plan(ctx: CompressContext, compressors: list[Compressor]) -> tuple[list[Compressor], dict[str, str]]:
    """The compressors to build and, by name, why each other one is skipped; user errors raise here."""
    skipped: dict[str, str] = {}
    plan: list[Compressor] = []
    for c in compressors:
        if c.source != FP32 and c.source in skipped:
            skipped[c.name] = f"builds on {c.source}, which was skipped"
            continue
        why = c.skip_reason(ctx)
        if why:
            skipped[c.name] = why
            continue
        c.check(ctx)  # user errors surface here, before anything is written
        plan.append(c)
    return plan, skipped


def _measure_baseline(ctx: CompressContext) -> dict[str, Any]:
    return {"variant": FP32, "format": "torch", "path": MODEL, **measure(ctx, ctx.fp32, None),
            "gflop_per_example": round(flops_per_example(ctx.fp32.model, ctx.typical_length) / 1e9, 4),
            "model_fingerprint": ctx.model_fingerprint}


def _build_variant(ctx: CompressContext, c: Compressor) -> dict[str, Any]:
    """Build ``c`` into ``compressed/<name>/`` (atomically), measured; its ``variant.json`` record."""
    store = RunDir(ctx.compressed_dir)  # stage() builds compressed/.NAME.XXXX.tmp and renames it
    with store.stage(c.name) as tmp:
        start = time.perf_counter()
        info = c.build(ctx, tmp)
        seconds = time.perf_counter() - start
        predictor = load_model_folder(tmp)
        record = {
            "variant": c.name, "format": c.format, "model_file": _MODEL_FILES[c.format], "source": c.source,
            "description": c.description, **measure(ctx, predictor, tmp),
            "build": info, "build_seconds": round(seconds, 2), "model_fingerprint": ctx.model_fingerprint,
            "options": ctx.options.to_dict(),
        }
        del predictor
        atomic_write_json(tmp / VARIANT_META, record)
    return record


def _retime_fp32(ctx: CompressContext, baseline: dict[str, Any]) -> None:
    """Time fp32 again now that the variants ran: a busy moment during the first timing would
    otherwise flatter every variant. Each batch size keeps the faster of the two medians."""
    again = latency(ctx, ctx.fp32)
    first = baseline["latency"]
    for size in ("batch_1", "batch_32"):
        if again[f"{size}_ms"] < first[f"{size}_ms"]:
            first[f"{size}_ms"], first[f"{size}_p90_ms"] = again[f"{size}_ms"], again[f"{size}_p90_ms"]
    first["throughput_batch_32"] = round(32 / (first["batch_32_ms"] / 1e3), 2)
    first["timed_twice"] = True


def _write_selection(ctx: CompressContext, baseline: dict[str, Any], variants: dict[str, dict[str, Any]],
                     skipped: dict[str, str]) -> dict[str, Any]:
    """Select under the budget; write ``baseline.json``, ``selected``, the report and the plot."""
    options = ctx.options
    selection = select_variant(baseline, variants, options.budget, options.speed_by, floor=ctx.baseline_floor)
    selected_path = MODEL if selection["variant"] == FP32 else f"{COMPRESSED}/{selection['variant']}"
    atomic_write_json(ctx.compressed_dir / BASELINE, baseline)
    atomic_write_json(ctx.compressed_dir / SELECTED, {
        "variant": selection["variant"], "path": selected_path, "reason": selection["reason"],
        "budget": options.budget, "speed_by": options.speed_by,
    })
    atomic_write_text(ctx.compressed_dir / REPORT, render_report(baseline, variants, selection, skipped,
                                                                 options.to_dict()))
    plot_tradeoff(baseline, variants, selection["variant"], ctx.compressed_dir / PLOT)
    return selection


def compress(run: RunDir | str | Path, options: CompressOptions | None = None, *,
             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build, measure and select compressed variants of a trained run.

    Args:
        run: a trained run directory.
        options: what to build and how (defaults: every compressor, budget 1 point).
        say: called with one line per step (the CLI prints them).

    Returns:
        The summary also stored in the manifest under ``compress``.

    Raises:
        RunDirError: the run has no trained model.
        ConfigError: unknown compressor, bad option, architecture the exporter cannot handle.
        DataError: too few training texts to calibrate static int8.
        MissingExtraError: onnx/onnxruntime (or torch) are not installed.
    """
    tell = say or (lambda line: logger.info("%s", line))
    options = options or CompressOptions()
    run = run if isinstance(run, RunDir) else RunDir(run)
    if options.speed_by == "batch_8":
        raise ConfigError("--speed-by batch_8 is for a generative run; a classifier is timed at batch_1 or batch_32.")
    names = resolve_names(options.only)  # an unknown name is reported before the run is read
    ctx = CompressContext(run, options)
    compressors = [get_compressor(n) for n in names]
    _check_extras(compressors)
    plan, skipped = _plan(ctx, compressors)
    for name, why in skipped.items():
        tell(f"skip {name}: {why}")

    tell(f"measuring fp32 (typical length {ctx.typical_length} tokens, {len(ctx.test[0])} test texts)")
    baseline = _measure_baseline(ctx)
    on_disk = read_variants(ctx.compressed_dir, ctx.model_fingerprint)
    built: list[str] = []
    for c in plan:
        pulled_in = options.only is not None and c.name not in options.only
        if pulled_in and c.name in on_disk and not on_disk[c.name]["stale"]:
            tell(f"reusing {c.name} (built from the current model) for what builds on it")
            continue
        tell(f"building {c.name} ({c.description})")
        record = _build_variant(ctx, c)
        built.append(c.name)
        lat = record["latency"]
        tell(f"  {c.name}: {record['size_mb']:.1f} MB, {lat['batch_1_ms']:.1f} ms @1, {lat['batch_32_ms']:.1f} ms "
             f"@32, accuracy {record['accuracy']:.4f} (fp32 {baseline['accuracy']:.4f})")
    if built:
        _retime_fp32(ctx, baseline)
    variants = read_variants(ctx.compressed_dir, ctx.model_fingerprint)
    selection = _write_selection(ctx, baseline, variants, skipped)
    tell(f"selected {selection['variant']}: {selection['reason']}")
    summary = {
        "budget": options.budget,
        "speed_by": options.speed_by,
        "selected": selection["variant"],
        "reason": selection["reason"],
        "typical_length": ctx.typical_length,
        "baseline": _summary(baseline),
        "variants": {name: _summary(rec) for name, rec in variants.items()},
        "built": built,
        "skipped": skipped,
    }
    run.update_manifest(compress=summary)
    return summary
