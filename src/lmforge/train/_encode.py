"""Tokenized datasets and the seeded, length-grouped training sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["EncodedTexts", "SeededLengthSampler", "encode"]


class EncodedTexts(Dataset):
    """Token ids of each text (unpadded) and, for training, its label id."""

    def __init__(self, features: dict[str, list[list[int]]], labels: Sequence[int] | None = None) -> None:
        self.features = features
        self.labels = list(labels) if labels is not None else None
        self.lengths = [len(ids) for ids in features["input_ids"]]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {key: values[i] for key, values in self.features.items()}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def encode(tokenizer: Any, texts: Sequence[str], max_length: int, labels: Sequence[int] | None = None) -> EncodedTexts:
    """Tokenize ``texts`` (truncated to ``max_length``, no padding: the collator pads per batch)."""
    features = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features]
    return EncodedTexts({k: features[k] for k in keep}, labels)


class SeededLengthSampler(Sampler[int]):
    """Shuffles by ``seed + epoch``; with ``group`` on, batches hold texts of similar length.

    Grouping follows Hugging Face's length-grouped sampler (shuffle, cut into mega-batches of
    50 batches, sort each by length) so padding stays small while order stays random. The
    generator is private and derived from the epoch, not the global RNG, so a run resumed
    from a checkpoint in the middle of an epoch sees exactly the same order as one that
    never stopped.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: bool = True) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        if not self.group:
            return iter(order)
        mega = self.batch_size * 50
        out: list[int] = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            out.extend(chunk)
        # Put the longest batch first so an out-of-memory error shows at step one, not hours in.
        batches = [out[i : i + self.batch_size] for i in range(0, len(out), self.batch_size)]
        longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]])
        batches[0], batches[longest] = batches[longest], batches[0]
        return iter([i for batch in batches for i in batch])
