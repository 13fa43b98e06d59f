"""Sentence embeddings from an ONNX encoder: ``tokenizers`` + ``onnxruntime``, never torch.

The folder holds ``model.onnx`` (an encoder whose one output, ``embeddings``, is already the
mean-pooled, L2-normalized vector of :func:`lmforge.predict.mean_pool`), the tokenizer files
and :data:`EMBEDDER_META` (``max_length``, ``dim``, how it was built and how well it agreed
with the torch encoder it came from). ``lmforge.compress.export_int8_embedder`` writes it;
the recommender's server embeds ``{text}`` and ``{history}`` queries with it, so a serving
process needs no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import RunDirError
from lmforge.predict._onnx import onnx_session
from lmforge.predict._tokenizer import FastTokenizer
from lmforge.rundir import ONNX_FILE

__all__ = ["EMBEDDER_META", "OnnxEmbedder"]

EMBEDDER_META = "lmforge_embedder.json"
"""The sidecar of an ONNX embedder folder."""


class OnnxEmbedder:
    """Embeds texts with the ONNX encoder in ``folder`` (see the module docstring).

    Args:
        folder: the embedder folder.
        threads: intra-op threads (None: ONNX Runtime's default).
        spinning: let idle intra-op threads busy-wait (off in a server, which shares the cores).
    """

    backend = "onnxruntime"

    def __init__(self, folder: str | Path, threads: int | None = None, *, spinning: bool = True,
                 batch_size: int = 64) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / EMBEDDER_META
        if not meta_path.is_file() or not (self.folder / ONNX_FILE).is_file():
            raise RunDirError(f"{self.folder} is no ONNX embedder ({EMBEDDER_META} or {ONNX_FILE} is missing); "
                              "build it again (lmforge recommend train writes one).")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        self.max_length = int(self.meta["max_length"])
        self.dim = int(self.meta["dim"])
        self.batch_size = batch_size
        self.tokenizer = FastTokenizer(self.folder, self.max_length)
        self.session = onnx_session(self.folder / ONNX_FILE, threads, spinning=spinning)
        self._inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: shape (N, dim), float32, unit length (texts of similar length batched)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # less padding per batch
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            feed = self.tokenizer([texts[i] for i in idx])
            (emb,) = self.session.run(None, {n: feed[n] for n in self._inputs})  # (B, dim)
            out[idx] = emb
        return out
