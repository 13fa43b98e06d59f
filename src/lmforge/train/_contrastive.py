"""Contrastive fine-tuning of an encoder on (query, document) pairs with in-batch negatives.

Each query should embed nearer its own document than any other document in its batch: the
loss is the symmetric InfoNCE over the batch's cosine-similarity matrix divided by a
temperature (Oord et al., 2018; the form dense retrievers and CLIP train with). Both sides go
through one encoder (a shared tower) with :func:`lmforge.predict.mean_pool`, the pooling
:class:`lmforge.predict.TextEmbedder` uses afterwards. Pairs whose documents are the same item
(``doc_keys``) are not each other's negatives.

This is a plain torch loop, not the HF Trainer of the classification stage: there is no
labelled split to evaluate and checkpoint against, and a pair batch is two tokenized lists.
LoRA (peft, ``FEATURE_EXTRACTION``) is merged into the weights before saving, so the folder
is a plain ``save_pretrained`` encoder any loader reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import ConfigError
from lmforge.predict import mean_pool
from lmforge.train._methods import lora_targets, wrap_peft

if TYPE_CHECKING:
    from lmforge.config import TrainConfig

__all__ = ["CONTRASTIVE_METHODS", "train_contrastive"]

CONTRASTIVE_METHODS = ("full", "lora")
"""The ``train.method`` values contrastive training accepts."""


def _wrap(model: Any, cfg: TrainConfig) -> Any:
    if cfg.method == "lora":
        peft = require("peft", extra="train", purpose="LoRA fine-tuning")
        config = peft.LoraConfig(
            task_type=peft.TaskType.FEATURE_EXTRACTION, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout, target_modules=lora_targets(model, cfg.lora.target_modules),
        )
        return wrap_peft(model, config, "train.lora.target_modules")
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def _same_key_mask(keys: Sequence[str]) -> np.ndarray:
    """(B, B) True where two different pairs of the batch share a document (not a negative)."""
    arr = np.asarray(keys, dtype=object)
    mask = arr[:, None] == arr[None, :]
    np.fill_diagonal(mask, False)
    return mask


def _batch_loss(model: Any, tokenizer: Any, queries: list[str], documents: list[str], keys: list[str],
                max_length: int, temperature: float) -> Any:
    """Symmetric InfoNCE of one batch: row i's positive is column i, same-document columns masked."""
    import torch

    def embed(texts: list[str]) -> Any:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])  # (B, H)

    logits = embed(queries) @ embed(documents).T / temperature  # (B, B)
    logits = logits.masked_fill(torch.from_numpy(_same_key_mask(keys)), float("-inf"))
    target = torch.arange(len(queries))
    return (torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)) / 2


def _save(model: Any, tokenizer: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def train_contrastive(
    base: str | Path,
    queries: Sequence[str],
    documents: Sequence[str],
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    max_length: int = 128,
    epochs: float = 1.0,
    temperature: float = 0.05,
    doc_keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fine-tune the encoder folder ``base`` so ``queries[i]`` embeds near ``documents[i]``; save it.

    Uses ``cfg.method`` (``full`` or ``lora``), ``batch_size``, ``learning_rate``,
    ``weight_decay``, ``warmup_ratio``, ``scheduler``, ``max_grad_norm``, ``max_steps`` (else
    ``epochs`` passes), ``seed``, ``threads``, ``freeze_embeddings`` and ``lora``. The batch order
    is a seeded permutation per epoch. ``out_dir`` receives the encoder (LoRA merged) and tokenizer.

    Returns:
        The training summary: method, pairs, steps, seconds, first and last loss, trainable parameters.

    Raises:
        ConfigError: another method, or fewer than two pairs (nothing to contrast).
    """
    if cfg.method not in CONTRASTIVE_METHODS:
        raise ConfigError(f"train.method '{cfg.method}' cannot train the text model; "
                          f"use one of {', '.join(CONTRASTIVE_METHODS)}.")
    if len(queries) != len(documents) or len(queries) < 2:
        raise ConfigError(f"Contrastive training needs at least 2 (query, document) pairs, got "
                          f"{len(queries)} queries and {len(documents)} documents.")
    keys = list(doc_keys) if doc_keys is not None else list(documents)
    torch = require("torch", extra="train", purpose="Contrastive fine-tuning")
    transformers = require("transformers", extra="train", purpose="Contrastive fine-tuning")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = _wrap(transformers.AutoModel.from_pretrained(base, use_safetensors=True), cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = min(cfg.batch_size, len(queries))
    per_epoch = math.ceil(len(queries) / batch)
    total = cfg.max_steps or max(1, math.ceil(epochs * per_epoch))
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = transformers.get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total),
                                          num_training_steps=total)
    rng = np.random.default_rng(cfg.seed)

    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    order = rng.permutation(len(queries))
    for step in range(total):
        start = (step % per_epoch) * batch
        if step and start == 0:
            order = rng.permutation(len(queries))
        idx = order[start : start + batch]
        if len(idx) < 2:  # a lone pair at an epoch's end has no negative
            idx = order[:batch]
        loss = _batch_loss(model, tokenizer, [queries[i] for i in idx], [documents[i] for i in idx],
                           [keys[i] for i in idx], max_length, temperature)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - started
    trainable = sum(p.numel() for p in params)
    _save(model.eval().merge_and_unload() if cfg.method == "lora" else model.eval(), tokenizer, Path(out_dir))
    return {"method": cfg.method, "pairs": len(queries), "steps": total, "batch_size": batch,
            "learning_rate": cfg.learning_rate, "temperature": temperature, "seconds": round(seconds, 2),
            "pairs_per_second": round(total * batch / seconds, 2) if seconds else None,
            "loss_first": losses[0], "loss_last": losses[-1], "trainable_params": int(trainable)}
