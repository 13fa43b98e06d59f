"""``merged``: a LoRA run's adapter folded into the base weights (W + B A * alpha / r).

Inference then costs exactly what the base model costs: no adapter matmuls, no peft at
load time. Only a run trained with ``train.method: lora`` has an adapter to merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.compress._build import flops_per_example, param_count, write_sidecars
from lmforge.compress._register import register_compressor
from lmforge.predict import save_torch_model
from lmforge.rundir import FP32

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext


@register_compressor("merged")
class Merged:
    """LoRA adapter merged into the base model's weights, saved as one safetensors model."""

    name = "merged"
    format = "torch"
    source = FP32
    extras = (("torch", "train"), ("transformers", "train"), ("peft", "train"))
    # Measured 0.0 on the tests' tiny LoRA run (fp32 merges the adapter the same way when it loads).
    tolerance = 1e-6  # the same function, reassociated
    description = "PyTorch fp32, LoRA adapter merged into the base weights"

    def skip_reason(self, ctx: CompressContext) -> str | None:
        if not ctx.is_adapter:
            return f"the run was trained with method '{ctx.meta.get('method')}': only a LoRA run has an adapter to merge"
        return None

    def check(self, ctx: CompressContext) -> None:
        return None

    def build(self, ctx: CompressContext, out: Path) -> dict[str, Any]:

        # lmforge.predict.load_predictor loads base + adapter through peft and merge_and_unload()s it.
        model, _ = ctx.torch_model(self.source)
        if any("lora_" in name for name, _ in model.named_parameters()):  # a bug, not a user error
            raise RuntimeError("the LoRA adapter was not merged")
        save_torch_model(model, out)
        write_sidecars(ctx, out, "transformers", merged_from=f"{ctx.meta.get('base_model')} + LoRA adapter")
        return {"parameters": param_count(model),
            "gflop_per_example": round(flops_per_example(model, ctx.typical_length) / 1e9, 4), "adapter": "model/adapter_model.safetensors"}
