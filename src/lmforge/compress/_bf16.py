"""``torch-bf16``: the model's weights in bfloat16, run by PyTorch.

Worth it only where the CPU multiplies bf16 natively (AMX tiles; ~4x fp32 at batch 32 on
such a CPU). Elsewhere bf16 is emulated and slower than fp32, so the variant is skipped
with that reason, unless forced (``force_bf16`` / ``--force-bf16`` or ``LMFORGE_FORCE_BF16=1``),
which tests use to exercise the code path on any CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.compress._build import flops_per_example, param_count, write_sidecars
from lmforge.compress._register import register_compressor
from lmforge.predict import save_torch_model
from lmforge.rundir import FP32
from lmforge.train import fast_bf16

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext

FORCE_ENV = "LMFORGE_FORCE_BF16"


@register_compressor("torch-bf16")
class TorchBf16:
    """bf16 weights (half the bytes), PyTorch inference; only where bf16 runs fast."""

    name = "torch-bf16"
    format = "torch"
    source = FP32
    extras = (("torch", "train"), ("transformers", "train"))
    # Measured 0.0011 on the tests' tiny run; about 3x that.
    tolerance = 0.003  # bf16 keeps 8 bits of mantissa
    description = "PyTorch, bf16 weights and compute"

    def skip_reason(self, ctx: CompressContext) -> str | None:

        if fast_bf16() or ctx.options.force_bf16 or os.environ.get(FORCE_ENV) == "1":
            return None
        return ("this CPU has no fast bf16 (neither amx_bf16 nor avx512_bf16 in /proc/cpuinfo): bf16 matmuls are emulated and "
                "slower than fp32 here; use --force-bf16 to build it anyway")

    def check(self, ctx: CompressContext) -> None:
        return None

    def build(self, ctx: CompressContext, out: Path) -> dict[str, Any]:
        import torch


        model, _ = ctx.torch_model(self.source)
        model = model.to(torch.bfloat16)
        save_torch_model(model, out)
        write_sidecars(ctx, out, "transformers", dtype="bfloat16")

        return {"dtype": "bfloat16", "parameters": param_count(model),
            "gflop_per_example": round(flops_per_example(model, ctx.typical_length) / 1e9, 4), "fast_bf16_cpu": fast_bf16()}
