"""``merged``: a peft run's adapter folded into the base weights.

LoRA and AdaLoRA add their low-rank update to each adapted weight (``W + B A * alpha / r``;
AdaLoRA's ``B diag(E) A`` over its kept ranks), IA3 multiplies each adapted weight by its
learned vector; either way the result is one plain model. Inference then costs exactly what
the base model costs: no adapter matmuls, no peft at load time. Only a run whose ``model/`` is a
peft adapter (``train.method`` ``lora``, ``adalora`` or ``ia3``) has one to merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.compress._build import flops_per_example, param_count, write_sidecars
from lmforge.compress._register import register_compressor
from lmforge.predict import save_torch_model
from lmforge.rundir import FP32

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext


@register_compressor("merged")
class Merged:
    """A peft adapter (LoRA, AdaLoRA, IA3) merged into the base model's weights, saved as one safetensors model."""

    name = "merged"
    format = "torch"
    source = FP32
    extras = (("torch", "train"), ("transformers", "train"), ("peft", "train"))
    # Measured 0.0 on the tests' tiny LoRA run (fp32 merges the adapter the same way when it loads).
    tolerance = 1e-6  # the same function, reassociated
    description = "PyTorch fp32, peft adapter merged into the base weights"

    def skip_reason(self, ctx: CompressContext) -> str | None:
        if not ctx.is_adapter:
            return (f"the run was trained with method '{ctx.meta.get('method')}': only a run with a peft adapter "
                    "(lora, adalora, ia3) has one to merge")
        return None

    def check(self, ctx: CompressContext) -> None:
        return None

    def build(self, ctx: CompressContext, out: Path) -> dict[str, Any]:
        tuners = require("peft.tuners.tuners_utils", extra="train", purpose="Merging a peft adapter")
        method = ctx.meta.get("method") or "peft"
        # lmforge.predict.load_predictor loads base + adapter through peft and merge_and_unload()s it.
        model, _ = ctx.torch_model(self.source)
        if any(isinstance(m, tuners.BaseTunerLayer) for m in model.modules()):  # a bug, not a user error
            raise RuntimeError(f"the {method} adapter was not merged")
        save_torch_model(model, out)
        write_sidecars(ctx, out, "transformers", merged_from=f"{ctx.meta.get('base_model')} + {method} adapter")
        return {"parameters": param_count(model),
            "gflop_per_example": round(flops_per_example(model, ctx.typical_length) / 1e9, 4), "adapter": "model/adapter_model.safetensors"}
