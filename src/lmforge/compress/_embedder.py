"""An encoder folder as an ONNX int8 embedder: the recommender's query tower without torch at serve time.

The exported graph is the encoder plus :func:`lmforge.predict.mean_pool` (one output,
``embeddings``, unit rows), fused by ONNX Runtime's transformer optimizer like a classifier's
(:func:`optimize_onnx` keeps the plain graph when the fused one disagrees), then quantized
dynamically to int8 (weights per channel, activations per batch), as ``onnx-int8-dynamic``.

int8 moves embeddings a little. The export is checked against the torch encoder it came from
on real texts (the caller's: item texts): the smallest cosine between the two goes into the
sidecar, and when it is below :data:`EMBEDDER_MIN_COSINE` the int8 graph is not kept: the fused fp32
graph is written instead (``quantization: none`` says so), so a served query never ranks with
an encoder that disagrees with the one that embedded the items.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.compress._build import int8_dynamic
from lmforge.compress._onnx import OPSET, check_exportable, export_onnx, optimize_onnx
from lmforge.predict import (
    EMBEDDER_META,
    TOKENIZER_FILES,
    FastTokenizer,
    OnnxEmbedder,
    TextEmbedder,
    mean_pool,
)
from lmforge.rundir import ONNX_FILE, atomic_write_json

__all__ = ["EMBEDDER_MIN_COSINE", "export_int8_embedder"]

log = logging.getLogger(__name__)

EMBEDDER_MIN_COSINE = 0.99
"""The smallest cosine between an int8 embedding and the torch encoder's that keeps the int8 graph."""


def _mean_pooled(model: Any) -> Any:
    """Wrap a HF encoder so the exported graph has one output: the mean-pooled unit embedding."""
    torch = require("torch", extra="train", purpose="ONNX export")

    class MeanPooled(torch.nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return mean_pool(self.inner(**kwargs).last_hidden_state, attention_mask)  # (B, H)

    return MeanPooled(model)


def _min_cosine(reference: np.ndarray, folder: Path, texts: list[str]) -> float:
    got = OnnxEmbedder(folder, threads=1).encode(texts)
    return float((reference * got).sum(axis=1).min())


def export_int8_embedder(model_dir: str | Path, out: str | Path, *, max_length: int,
                         texts: Sequence[str]) -> dict[str, Any]:
    """Export the encoder saved in ``model_dir`` to ``out`` (``model.onnx``, tokenizer, sidecar).

    Args:
        model_dir: a ``save_pretrained`` encoder folder with its tokenizer (``tokenizer.json``).
        out: the embedder folder to write (created; its files replaced).
        max_length: longest token sequence kept, as the torch encoder was run with.
        texts: real texts to check the export on (a few hundred are plenty; at least one).

    Returns:
        The sidecar written to ``out/lmforge_embedder.json``.

    Raises:
        ConfigError: an architecture ONNX export does not support.
        MissingExtraError: torch, transformers, onnx or onnxruntime is not installed.
    """
    transformers = require("transformers", extra="train", purpose="ONNX export of an encoder")
    model_dir, out = Path(model_dir), Path(out)
    texts = [t for t in texts if t] or ["a"]
    model = transformers.AutoModel.from_pretrained(model_dir, use_safetensors=True).eval()
    check_exportable(model.config.model_type)
    out.mkdir(parents=True, exist_ok=True)
    raw, fused = out / ".export.onnx", out / ".fp32.onnx"
    inputs = export_onnx(model, raw, wrap=_mean_pooled, outputs=("embeddings",))
    config = model.config
    info = optimize_onnx(raw, fused, FastTokenizer(model_dir, max_length)(texts[:8]),
                         num_heads=int(config.num_attention_heads), hidden_size=int(config.hidden_size))
    raw.unlink()
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out / name)
    meta: dict[str, Any] = {"format": "onnx-embedder", "max_length": max_length, "dim": int(config.hidden_size),
                            "pooling": "mean, L2-normalized", "opset": OPSET, "inputs": inputs,
                            "source": model_dir.name, **info}
    atomic_write_json(out / EMBEDDER_META, meta)
    reference = TextEmbedder(model_dir, max_length=max_length).encode(texts)
    meta.update(int8_dynamic(fused, out / ONNX_FILE))
    cosine = _min_cosine(reference, out, texts)
    if cosine < EMBEDDER_MIN_COSINE:
        log.warning("int8 embeddings differ from the torch encoder's (min cosine %.4f < %s): keeping the fp32 graph",
                    cosine, EMBEDDER_MIN_COSINE)
        shutil.copyfile(fused, out / ONNX_FILE)
        meta["quantization"] = {"mode": "none", "why": f"int8 min cosine {cosine:.4f} < {EMBEDDER_MIN_COSINE}"}
        meta["int8_min_cosine"] = round(cosine, 6)
        cosine = _min_cosine(reference, out, texts)
    fused.unlink()
    meta.update(min_cosine_vs_torch=round(cosine, 6), checked_texts=len(texts))
    atomic_write_json(out / EMBEDDER_META, meta)
    return meta
