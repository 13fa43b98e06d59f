"""The compress stage: ONNX, int8, bf16, pruning, distillation and peft-adapter merge under an accuracy budget.

``compress(run, options)`` builds ``RUN/compressed/<variant>/`` for every registered
compressor that applies, measures each on this machine and the run's test split, and
points ``RUN/compressed/selected`` at the fastest variant within the accuracy budget.
Loading a variant is the inference layer's job: :func:`lmforge.predict.load_predictor`.
A generative run's variants (``merged``, ``torch-int8-dynamic``, ``torch-bf16``; registered in
:data:`GENERATOR_COMPRESSORS`) are measured in tokens/s, time to first token, size, ROUGE-L and
perplexity, selected within points of ROUGE-L, and load through :func:`lmforge.predict.load_generator`.
:func:`export_int8_embedder` turns an encoder folder into an ONNX int8 embedder (mean-pooled unit
vectors, checked against the torch encoder), loaded by :class:`lmforge.predict.OnnxEmbedder`.

Importing this package is cheap; torch, transformers and onnxruntime load when used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.compress._context import CompressContext
from lmforge.compress._embedder import EMBEDDER_MIN_COSINE, export_int8_embedder
from lmforge.compress._options import MIN_CALIBRATION, CompressOptions, parse_budget, parse_only
from lmforge.compress._register import (
    COMPRESSORS,
    GENERATOR_COMPRESSORS,
    Compressor,
    GeneratorCompressor,
    register_compressor,
    register_generator_compressor,
)
from lmforge.compress._registry import get_compressor, get_generator_compressor, resolve_names
from lmforge.compress._select import select_variant
from lmforge.predict import CAUSAL_LM, run_kind
from lmforge.rundir import RunDir

__all__ = [
    "COMPRESSORS",
    "EMBEDDER_MIN_COSINE",
    "GENERATOR_COMPRESSORS",
    "MIN_CALIBRATION",
    "CompressContext",
    "CompressOptions",
    "Compressor",
    "GeneratorCompressor",
    "compress",
    "export_int8_embedder",
    "get_compressor",
    "get_generator_compressor",
    "parse_budget",
    "parse_only",
    "register_compressor",
    "register_generator_compressor",
    "registered",
    "select_variant",
]

logger = logging.getLogger("lmforge.compress._stage")


def compress(run: RunDir | str | Path, options: CompressOptions | None = None, *,
             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """See :func:`lmforge.compress._stage.compress`; a generative run (``run_kind`` ``causal-lm``) goes to
    :func:`lmforge.compress._gen_stage.compress_generator`, its variants measured in tokens/s and ROUGE-L."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if run_kind(run) == CAUSAL_LM:
        from lmforge.compress._gen_stage import compress_generator

        return compress_generator(run, options or CompressOptions(), say or (lambda line: logger.info("%s", line)))
    from lmforge.compress._stage import compress as _compress

    return _compress(run, options, say=say)


def registered() -> list[str]:
    """Names of every registered compressor, in default build order."""
    return resolve_names(None)
