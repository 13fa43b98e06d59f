"""The compress stage: ONNX, int8, bf16, pruning, distillation and peft-adapter merge under an accuracy budget.

``compress(run, options)`` builds ``RUN/compressed/<variant>/`` for every registered
compressor that applies, measures each on this machine and the run's test split, and
points ``RUN/compressed/selected`` at the fastest variant within the accuracy budget.
Loading a variant is the inference layer's job: :func:`lmforge.predict.load_predictor`.

Importing this package is cheap; torch, transformers and onnxruntime load when used.
"""

from __future__ import annotations

from typing import Any

from lmforge.compress._context import CompressContext
from lmforge.compress._options import MIN_CALIBRATION, CompressOptions, parse_budget, parse_only
from lmforge.compress._register import COMPRESSORS, Compressor, register_compressor
from lmforge.compress._registry import get_compressor, resolve_names
from lmforge.compress._select import select_variant

__all__ = [
    "COMPRESSORS",
    "MIN_CALIBRATION",
    "CompressContext",
    "CompressOptions",
    "Compressor",
    "compress",
    "get_compressor",
    "parse_budget",
    "parse_only",
    "register_compressor",
    "registered",
    "select_variant",
]


def compress(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`lmforge.compress._stage.compress`."""
    from lmforge.compress._stage import compress as _compress

    return _compress(*args, **kwargs)


def registered() -> list[str]:
    """Names of every registered compressor, in default build order."""
    return resolve_names(None)
