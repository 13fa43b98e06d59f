"""Tokenize with the ``tokenizers`` library alone: no torch, no transformers.

A packaged ``tokenizer.json`` may carry a fixed padding (all-MiniLM-L6-v2 pads every input
to 128 tokens); :class:`FastTokenizer` turns it off and pads each batch to its own longest
text, and truncates to the run's ``max_length``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import RunDirError

__all__ = ["TOKENIZER_FILES", "FastTokenizer"]

# What a variant folder copies from model/ so it is self-contained.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


def _pad_id(tok: Any, folder: Path) -> int:
    padding = getattr(tok, "padding", None)
    if padding and "pad_id" in padding:
        return int(padding["pad_id"])
    config = folder / "tokenizer_config.json"
    if config.is_file():
        token = json.loads(config.read_text(encoding="utf-8")).get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            found = tok.token_to_id(token)
            if found is not None:
                return int(found)
    return 0


class FastTokenizer:
    """``tokenizer.json`` -> padded int64 arrays, one batch at a time.

    Args:
        folder: a folder with ``tokenizer.json``.
        max_length: longest token sequence kept (longer texts are truncated).
    """

    def __init__(self, folder: str | Path, max_length: int) -> None:
        tokenizers = require("tokenizers", extra="train", purpose="Tokenizing for ONNX Runtime")
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise RunDirError(f"{folder} has no tokenizer.json; re-run `lmforge compress` to rebuild the variant.")
        self._tok: Any = tokenizers.Tokenizer.from_file(str(path))
        self.pad_id = _pad_id(self._tok, folder)
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_length)
        self.max_length = max_length

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text after truncation (special tokens included)."""
        return [len(e.ids) for e in self._tok.encode_batch(list(texts))]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each token of ``text`` after truncation (``(0, 0)`` for special tokens)."""
        return [(int(s), int(e)) for s, e in self._tok.encode(text).offsets]

    def __call__(self, texts: Sequence[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
        """``input_ids``, ``attention_mask``, ``token_type_ids``: int64 arrays of shape (B, T).

        T is the batch's longest text, or ``pad_to`` when that is longer.
        """
        encodings = self._tok.encode_batch(list(texts))
        width = max([len(e.ids) for e in encodings] + [pad_to or 0])
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
