"""The compressors of a generative run: ``merged``, ``torch-int8-dynamic``, ``torch-bf16``.

Each writes a folder :func:`lmforge.predict.load_generator` loads on its own: weights as
safetensors, ``config.json``, the run's tokenizer, and the run's ``lmforge_model.json`` (its
system prompt and chat template, so a variant answers the prompts training rendered) with
``format: transformers`` plus what the variant is (``dtype``, ``quantization``).

- ``merged``: a peft adapter (LoRA, AdaLoRA, IA3) folded into the base weights, one plain
  model: the fp32 generator already merges when it loads, so this saves the load its base
  model check and merge, and serves a run without its base model folder.
- ``torch-int8-dynamic``: every linear layer int8 per output channel with activations
  quantized per call (:mod:`lmforge.predict._int8`): decoding reads a quarter of the bytes. The
  activations' outlier channels are first moved into the weights (SmoothQuant,
  :mod:`lmforge.compress._smooth`, calibrated on ``calibration_size`` training examples), which
  the saved weights keep: the folder loads as any int8 one.
- ``torch-bf16``: bf16 weights and compute, only where the CPU multiplies bf16 natively
  (``lmforge.train.fast_bf16``, as for classifiers), unless forced.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.compress._bf16 import FORCE_ENV
from lmforge.compress._build import param_count
from lmforge.compress._register import register_generator_compressor
from lmforge.compress._smooth import smooth_causal_lm
from lmforge.predict import INT8_DYNAMIC, TOKENIZER_FILES, quantize_int8_dynamic, save_int8_causal_lm
from lmforge.rundir import FP32, MODEL_META, atomic_write_json
from lmforge.train import fast_bf16

if TYPE_CHECKING:
    from lmforge.compress._gen_context import GenContext

_TOKENIZER_EXTRA = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "generation_config.json")


def write_generator_sidecars(ctx: GenContext, out: Path, **extra: Any) -> None:
    """Tokenizer files and ``lmforge_model.json`` (the run's, as full weights): the folder loads on its own."""
    for name in dict.fromkeys((*TOKENIZER_FILES, *_TOKENIZER_EXTRA)):
        src = ctx.run.model_dir / name
        if src.is_file() and not (out / name).exists():
            shutil.copyfile(src, out / name)
    meta = {k: v for k, v in ctx.meta.items() if k not in ("dtype", "quantization")}
    atomic_write_json(out / MODEL_META, {**meta, "format": "transformers", **extra})


def _save_full(model: Any, out: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)


class _FromFp32:
    format = "torch"
    source = FP32
    extras: tuple[tuple[str, str], ...] = (("torch", "train"), ("transformers", "train"))


@register_generator_compressor("merged")
class GenMerged(_FromFp32):
    """A peft adapter merged into the base weights, saved as one full fp32 model."""

    name = "merged"
    extras = (("torch", "train"), ("transformers", "train"), ("peft", "train"))
    description = "PyTorch fp32, peft adapter merged into the base weights"

    def skip_reason(self, ctx: GenContext) -> str | None:
        if not ctx.is_adapter:
            return (f"the run was trained with method '{ctx.meta.get('method')}': only a run with a peft adapter "
                    "(lora, adalora, ia3) has one to merge")
        return None

    def build(self, ctx: GenContext, out: Path) -> dict[str, Any]:
        model = ctx.torch_model()  # load_generator merged the adapter (merge_and_unload) when it loaded fp32
        _save_full(model, out)
        write_generator_sidecars(ctx, out, merged_from=f"{ctx.meta.get('base_model')} + {ctx.meta.get('method')} "
                                 "adapter")
        return {"parameters": param_count(model), "adapter": "model/adapter_model.safetensors"}


@register_generator_compressor("torch-int8-dynamic")
class GenInt8Dynamic(_FromFp32):
    """Every linear layer int8 per output channel, activations quantized per call (PyTorch, fbgemm),
    after SmoothQuant."""

    name = "torch-int8-dynamic"
    description = "PyTorch, dynamic int8 linear layers (weights per channel, activations per call), smoothed"

    def skip_reason(self, ctx: GenContext) -> str | None:
        return None

    def build(self, ctx: GenContext, out: Path) -> dict[str, Any]:
        model = ctx.torch_model()
        parameters = param_count(model)
        alpha = ctx.options.smooth_alpha
        smoothing = smooth_causal_lm(model, ctx.calibration_ids() if alpha > 0 else [], alpha)
        model, _ = quantize_int8_dynamic(model)
        modules = save_int8_causal_lm(model, out)
        write_generator_sidecars(ctx, out, quantization={"method": INT8_DYNAMIC, "modules": modules})
        return {"parameters": parameters, "quantization": {"mode": "dynamic", "weights": "int8 per output channel",
                                                           "activations": "per call", "modules": len(modules),
                                                           "smoothing": smoothing}}


@register_generator_compressor("torch-bf16")
class GenBf16(_FromFp32):
    """bf16 weights and compute; only where bf16 runs fast."""

    name = "torch-bf16"
    description = "PyTorch, bf16 weights and compute"

    def skip_reason(self, ctx: GenContext) -> str | None:
        if fast_bf16() or ctx.options.force_bf16 or os.environ.get(FORCE_ENV) == "1":
            return None
        return ("this CPU has no fast bf16 (neither amx_bf16 nor avx512_bf16 in /proc/cpuinfo): bf16 matmuls are "
                "emulated and slower than fp32 here; use --force-bf16 to build it anyway")

    def build(self, ctx: GenContext, out: Path) -> dict[str, Any]:
        import torch

        model = ctx.torch_model().to(torch.bfloat16)
        _save_full(model, out)
        write_generator_sidecars(ctx, out, dtype="bfloat16")
        return {"dtype": "bfloat16", "parameters": param_count(model), "fast_bf16_cpu": fast_bf16()}
