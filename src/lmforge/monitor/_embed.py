"""Sentence embeddings from a packaged encoder (mean pooling, L2-normalized), with an LRU cache.

Consecutive drift checks overlap (every ``drift_every`` predictions over the last
``drift_window``), so most texts of a check were embedded by the previous one: the cache
turns that repeated work into dictionary lookups.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.catalog import resolve_model

__all__ = ["SentenceEncoder", "get_encoder"]

_ENCODERS: dict[tuple[str, int], SentenceEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


class SentenceEncoder:
    """Embeds texts with a Hugging Face encoder: mean of the last hidden states over real tokens."""

    def __init__(
        self, model: str = "minilm-l6", max_length: int = 64, batch_size: int = 32, cache_size: int = 20000
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._net: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        purpose = "Embedding drift detection"
        require("torch", extra="train", purpose=purpose)
        transformers = require("transformers", extra="train", purpose=purpose)
        path = resolve_model(self.model)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self._net = transformers.AutoModel.from_pretrained(path, use_safetensors=True).eval()

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self._net.config.hidden_size), dtype=np.float32)
        order = np.argsort(
            [len(t) for t in texts], kind="stable"
        )  # similar lengths share a batch: less padding
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._net(**batch).last_hidden_state  # (B, T, H)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (N, H), float32, unit length."""
        texts = list(texts)
        with self._lock:
            if self._net is None:
                self._load()
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                for text, vec in zip(missing, self._forward(missing), strict=True):
                    self._cache[text] = vec
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            rows = []
            for t in texts:
                vec = self._cache.get(t)
                if vec is None:  # evicted by this very call (more texts than the cache holds)
                    vec = self._forward([t])[0]
                else:
                    self._cache.move_to_end(t)
                rows.append(vec)
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def get_encoder(model: str = "minilm-l6", max_length: int = 64) -> SentenceEncoder:
    """The process-wide encoder of ``model`` (loaded on first use, then shared)."""
    with _ENCODERS_LOCK:
        key = (model, max_length)
        if key not in _ENCODERS:
            _ENCODERS[key] = SentenceEncoder(model, max_length)
        return _ENCODERS[key]
