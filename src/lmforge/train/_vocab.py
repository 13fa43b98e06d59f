"""Vocabulary extension (``model.extend_vocab``): new tokens for the characters a tokenizer cannot read.

The characters of the training split that the tokenizer reads only as its unknown token
(:func:`lmforge.data.unknown_characters`) become added tokens. Their embedding rows start at
the mean of the existing rows plus seeded Gaussian noise with the existing rows' per-dimension
spread: each new token is a distinct, typical-looking token from the first step (a single
unknown character has no sub-pieces whose embeddings could be averaged, and rows all equal to
the mean would make every new character look the same to the model until training pulled
them apart, which at fine-tuning learning rates takes far longer than a run). The new rows always train; with ``train.freeze_embeddings`` the old rows stay exactly as
they were: a gradient hook zeroes their gradient and the matrix is kept out of weight decay
(decoupled decay would otherwise shrink frozen rows). LoRA trains the new rows through peft's
``trainable_token_indices`` instead. The extended tokenizer is saved with the model, so every
later stage (predict, ONNX export, int8, serving) reads the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmforge.data import unknown_characters
from lmforge.errors import ConfigError

__all__ = ["NO_DECAY_ATTR", "VocabExtension", "extend_vocabulary", "freeze_old_rows"]

NO_DECAY_ATTR = "_lmforge_no_weight_decay"
"""A parameter carrying this attribute is left out of weight decay by ``LmforgeTrainer``."""


@dataclass(frozen=True)
class VocabExtension:
    """What :func:`extend_vocabulary` added."""

    base_vocab_size: int
    """Embedding rows before (the ids of the new tokens start here)."""
    tokens: tuple[str, ...]
    """The added tokens, most frequent first."""

    @property
    def token_ids(self) -> list[int]:
        """Ids of the added tokens."""
        return list(range(self.base_vocab_size, self.base_vocab_size + len(self.tokens)))

    def as_dict(self) -> dict[str, Any]:
        """The JSON record kept in the manifest and ``lmforge_model.json``."""
        return {"base_vocab_size": self.base_vocab_size, "added": len(self.tokens),
                "vocab_size": self.base_vocab_size + len(self.tokens), "sample": "".join(self.tokens[:40])}


def extend_vocabulary(model: Any, tokenizer: Any, texts: list[str], max_tokens: int,
                      seed: int = 0) -> VocabExtension:
    """Add the unknown characters of ``texts`` to ``tokenizer`` and ``model`` (in place).

    The model's input embeddings grow to the tokenizer's new length; row ``i`` of the new ones
    is ``mean + std * z_i`` over the old rows (per dimension), ``z`` drawn from ``seed``.
    """
    embeddings = model.get_input_embeddings()
    base = int(embeddings.weight.shape[0])
    if len(tokenizer) > base:
        raise ConfigError(
            f"model.name: the tokenizer has {len(tokenizer)} tokens but the model's embedding matrix only "
            f"{base} rows, so its vocabulary cannot be extended; the folder mixes two models' files."
        )
    if len(tokenizer) < base:
        # Rows past the tokenizer's end (a vocabulary padded to a multiple of 8...) are never
        # read: drop them, so the added tokens (whose ids start at len(tokenizer)) get new rows
        # initialised below rather than the leftover padding rows.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        base = len(tokenizer)
    chars = unknown_characters(tokenizer, texts, limit=max_tokens)
    if not chars:
        return VocabExtension(base, ())
    tokenizer.add_tokens(chars)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        old = weight[:base].float()
        noise = torch.randn(len(chars), old.shape[1], generator=torch.Generator().manual_seed(seed))
        weight[base:] = (old.mean(dim=0) + old.std(dim=0) * noise).to(weight.dtype)  # (N_new, H)
    return VocabExtension(base, tuple(chars))


def freeze_old_rows(model: Any, base_vocab_size: int) -> None:
    """Train only the embedding rows from ``base_vocab_size`` on; the rows before stay bit-exact.

    The matrix trains (``requires_grad``), a hook zeroes the gradient of the old rows (so
    they take no optimizer step and do not count in gradient clipping), and the matrix is
    marked to be left out of weight decay.
    """
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(True)

    def zero_old_rows(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:base_vocab_size] = 0
        return grad

    weight.register_hook(zero_old_rows)
    setattr(weight, NO_DECAY_ATTR, True)
