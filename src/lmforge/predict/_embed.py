"""Sentence embeddings from an encoder folder: mean of the last hidden states over real tokens,
L2-normalized, so a dot product is a cosine similarity.

The recommender's two towers share one encoder: ``train.train_contrastive`` fine-tunes it with
:func:`mean_pool` (the same pooling), and :class:`TextEmbedder` embeds item texts, user
histories and free-text queries with the folder it saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import RunDirError

__all__ = ["TextEmbedder", "mean_pool"]


def mean_pool(hidden: Any, mask: Any, *, normalize: bool = True) -> Any:
    """Mean of ``hidden`` (B, T', H) over the positions where ``mask`` (B, T) is 1 -> (B, H), unit-length
    unless ``normalize`` is False (what an out-of-scope detector fitted on raw embeddings reads).

    ``T'`` is ``T`` or more: the ``T' - T`` leading states of a prompt-tuned model (its virtual
    tokens, prepended to every text) count as real tokens.
    """
    import torch

    extra = hidden.shape[1] - mask.shape[1]
    if extra > 0:  # a constant for a given model, so the ONNX trace keeps batch and length dynamic
        mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, extra), mask], dim=1)  # (B, T')
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T', 1)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, H)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


class TextEmbedder:
    """Embeds texts with the encoder saved in ``folder`` (a ``save_pretrained`` folder + tokenizer)."""

    def __init__(self, folder: str | Path, *, max_length: int = 128, batch_size: int = 64) -> None:
        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self._net: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        purpose = "Embedding texts"
        require("torch", extra="train", purpose=purpose)
        transformers = require("transformers", extra="train", purpose=purpose)
        if not (self.folder / "config.json").is_file():
            raise RunDirError(f"No encoder in {self.folder} (config.json is missing). Train it first.")
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)
        self._net = transformers.AutoModel.from_pretrained(self.folder, use_safetensors=True).eval()

    @property
    def dim(self) -> int:
        """Width of the embeddings."""
        if self._net is None:
            self._load()
        return int(self._net.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: shape (N, H), float32, unit length (texts of similar length batched)."""
        import torch

        if self._net is None:
            self._load()
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # less padding per batch
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt")
                hidden = self._net(**batch).last_hidden_state  # (B, T, H)
                out[idx] = mean_pool(hidden, batch["attention_mask"]).float().numpy()
        return out
