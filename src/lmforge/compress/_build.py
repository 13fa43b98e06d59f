"""Steps several compressors share: the sidecar files of a variant folder, export+fuse, dynamic int8."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.predict import TOKENIZER_FILES, FastTokenizer
from lmforge.rundir import LABELS, MODEL_META, atomic_write_json

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext

__all__ = ["flops_per_example", "int8_dynamic", "onnx_from_torch", "param_count", "write_sidecars"]


def write_sidecars(ctx: CompressContext, out: Path, fmt: str, **extra: Any) -> None:
    """Tokenizer files, ``labels.json`` and ``lmforge_model.json``: a variant folder loads on its own."""
    for name in TOKENIZER_FILES:
        src = ctx.run.model_dir / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    atomic_write_json(out / LABELS, {"labels": ctx.labels})
    meta = {
        "method": ctx.meta.get("method"),
        "base_model": ctx.meta.get("base_model"),
        "max_length": ctx.max_length,
        "labels": ctx.labels,
        "format": fmt,
        **extra,
    }
    atomic_write_json(out / MODEL_META, meta)


def sample_feed(ctx: CompressContext, n: int = 8) -> dict[str, Any]:
    """A real batch of test texts as ONNX inputs (int64 arrays)."""
    return FastTokenizer(ctx.run.model_dir, ctx.max_length)(ctx.test[0][:n])


def onnx_from_torch(ctx: CompressContext, model: Any, out: Path, name: str = "model.onnx") -> dict[str, Any]:
    """Export ``model`` to ``out/name`` and fuse it; the unfused export is not kept."""
    from lmforge.compress._onnx import OPSET, export_onnx, optimize_onnx

    raw = out / ".export.onnx"
    inputs = export_onnx(model, raw)
    config = model.config
    size = int(config.hidden_size // config.num_attention_heads)
    widths = {layer.attention.self.query.out_features for layer in _layers(model)}
    if len(widths) == 1:  # every layer has the same attention width (pruned ones too): tell the fuser
        width = widths.pop()
        heads, hidden = width // size, width
    else:  # layers differ (or an unknown layout): let the fuser read each layer's shape from the graph
        heads, hidden = 0, 0
    info = optimize_onnx(raw, out / name, sample_feed(ctx), num_heads=heads, hidden_size=hidden)
    raw.unlink()
    return {"opset": OPSET, "inputs": inputs, "dynamic_axes": {"inputs": ["batch", "sequence"], "logits": ["batch"], "pooled": ["batch"]},
            "exporter": "torch.onnx.export(dynamo=False)", **info}


def _layers(model: Any) -> list[Any]:
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(layer, "attention") and hasattr(layer.attention, "self") for layer in layers):
        return []
    return list(layers)


def int8_dynamic(src: Path, dst: Path) -> dict[str, Any]:
    """Dynamic int8 (weights per channel, activations quantized at run time) of an ONNX graph."""
    onnx = require("onnx", extra="compress", purpose="int8 quantization")
    require("onnxruntime", extra="compress", purpose="int8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from lmforge.compress._onnx import quiet_onnxruntime

    # The fused graph has contrib ops (Attention, SkipLayerNormalization) that ONNX shape
    # inference cannot type; every tensor in these models is float32.
    with quiet_onnxruntime():
        quantize_dynamic(src.resolve(), dst.resolve(), per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"quantization": {"mode": "dynamic", "weights": "int8 per channel", "activations": "uint8, per batch"}}


def param_count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def flops_per_example(model: Any, seq_len: int) -> float:
    """Multiply-adds x 2 of one forward pass at ``seq_len`` tokens: every linear layer applied per token,
    plus the attention score and weighted-sum matmuls (the classifier head is negligible)."""
    torch = require("torch", extra="train", purpose="Counting FLOPs")
    total = 0.0
    for mod_name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and "classifier" not in mod_name and "pooler" not in mod_name:
            total += 2.0 * mod.in_features * mod.out_features * seq_len
    for layer in _layers(model):
        width = layer.attention.self.query.out_features
        total += 2.0 * 2.0 * seq_len * seq_len * width  # Q K^T and A V
    return total
