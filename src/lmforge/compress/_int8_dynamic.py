"""``onnx-int8-dynamic``: weights int8 per output channel, activations quantized per batch at run time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.compress._build import (
    flops_per_example,
    int8_dynamic,
    onnx_from_torch,
    param_count,
    write_sidecars,
)
from lmforge.compress._onnx_fp32 import OnnxFp32
from lmforge.compress._register import register_compressor

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext


class OnnxInt8Dynamic(OnnxFp32):
    """Export + fuse (as ``onnx-fp32``, whose checks it shares), then ONNX Runtime dynamic int8, per channel."""

    name = "onnx-int8-dynamic"
    # Measured 0.0048 on the tests' tiny runs (full and LoRA); about 3x that.
    tolerance = 0.015  # int8 rounding moves probabilities a little
    description = "ONNX, dynamic int8 (weights per channel, activations per batch)"

    def build(self, ctx: CompressContext, out: Path) -> dict[str, Any]:
        model, _ = ctx.torch_model(self.source)
        fp32 = out / ".fp32.onnx"
        info = onnx_from_torch(ctx, model, out, name=fp32.name)
        info.update(int8_dynamic(fp32, out / "model.onnx"))
        fp32.unlink()
        write_sidecars(ctx, out, "onnx")
        return {**info, "parameters": param_count(model),
                "gflop_per_example": round(flops_per_example(model, ctx.typical_length) / 1e9, 4)}


register_compressor("onnx-int8-dynamic")(OnnxInt8Dynamic)
