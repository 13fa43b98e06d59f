"""``onnx-fp32``: the fp32 model exported to ONNX, graph fused by ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.compress._build import flops_per_example, onnx_from_torch, param_count, write_sidecars
from lmforge.compress._register import register_compressor
from lmforge.rundir import FP32

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext

ONNX_EXTRAS = (("onnx", "compress"), ("onnxruntime", "compress"))


@register_compressor("onnx-fp32")
class OnnxFp32:
    """ONNX export (opset 17, dynamic batch and length) + ONNX Runtime transformer fusions."""

    name = "onnx-fp32"
    format = "onnx"
    source = FP32
    extras = ONNX_EXTRAS
    # Measured 1.8e-7 on the tests' tiny run (float32 rounding); 1e-6 leaves room for other CPUs' kernels.
    tolerance = 1e-6  # the same arithmetic in another order
    description = "ONNX export, fused attention/LayerNorm/GELU kernels, fp32"

    def skip_reason(self, ctx: CompressContext) -> str | None:
        return None

    def check(self, ctx: CompressContext) -> None:
        from lmforge.compress._onnx import check_exportable

        check_exportable(ctx.model_type)

    def build(self, ctx: CompressContext, out: Path) -> dict[str, Any]:
        model, _ = ctx.torch_model(self.source)
        info = onnx_from_torch(ctx, model, out)
        write_sidecars(ctx, out, "onnx")
        return {**info, "parameters": param_count(model),
                "gflop_per_example": round(flops_per_example(model, ctx.typical_length) / 1e9, 4)}
