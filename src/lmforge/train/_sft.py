"""Supervised fine-tuning of a causal LM (``task: generate``) on the classifier path's machinery.

The same ``LmforgeTrainer`` (seeded length-grouped sampler, atomic checkpoints, bit-exact
resume), method registry (LoRA with peft's ``CAUSAL_LM`` task type, or full), callbacks,
training arguments and ``model/`` writer as :func:`lmforge.train.train` uses for classifiers;
what differs is the data (prompt-masked examples, ``_sft_data``), the best model (lowest
validation loss) and what ``lmforge_model.json`` records for the generator that loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.catalog import resolve_model
from lmforge.config import Spec
from lmforge.data import read_examples
from lmforge.errors import DataError
from lmforge.predict import BASE_DIGEST, base_model_digest
from lmforge.rundir import RunDir
from lmforge.train._encode import EncodedTexts
from lmforge.train._hardware import resolve_device, resolve_precision, world
from lmforge.train._methods import Method, get_method
from lmforge.train._sft_data import context_limit, cut_warnings, encode_examples, load_tokenizer, sft_collator
from lmforge.train._stage import (
    _callbacks,
    _finish,
    _fit,
    _save_model,
    _set_dropout,
    _start_checkpoint,
    _summary,
    _training_args,
    per_process_batch,
)

logger = logging.getLogger(__name__)

__all__ = ["train_sft"]


def _build_causal_lm(spec: Spec, base_path: Path, method: Method) -> Any:
    """The pretrained causal LM (fp32), wrapped by the method."""
    transformers = require("transformers", extra="train", purpose="Fine-tuning a causal LM")
    transformers.set_seed(spec.train.seed)  # LoRA's A matrices are initialized from the global RNG
    transformers.utils.logging.disable_progress_bar()
    config = transformers.AutoConfig.from_pretrained(base_path)
    if spec.train.dropout is not None:
        _set_dropout(config, spec.train.dropout)
    # No KV cache while training: transformers detects packed rows (position ids restarting at 0)
    # only when no cache is passed; with one, packed examples would attend to each other.
    config.use_cache = False
    model = transformers.AutoModelForCausalLM.from_pretrained(
        base_path, config=config, use_safetensors=True, dtype="float32"
    )
    return method.wrap(model, spec.train)


def _base_config(model: Any) -> Any:
    """The config of the underlying transformers model (under a peft wrapper too)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def _dataset(tokenizer: Any, records: list[dict[str, Any]], spec: Spec, limit: int) -> tuple[EncodedTexts, list[str]]:
    encoded = encode_examples(tokenizer, records, system=spec.data.system, limit=limit, truncate=spec.data.truncate)
    return EncodedTexts({"input_ids": encoded.input_ids, "labels": encoded.labels}), cut_warnings(encoded, limit)


def eval_rows(cfg: Any, world_size: int = 1) -> int:
    """Rows per forward pass when a causal LM is evaluated: ``train.eval_batch_size``, at most the
    training batch of one process.

    A causal LM's logits are (rows x length x vocab) floats and the loss upcasts a copy: at the
    classifier's default of 128 rows, 512 tokens and SmolLM2's 49,152-entry vocabulary that is
    2 x 12.9 GB, which the kernel's OOM killer ended on a 24 GB machine at the end of
    bench/sft_quality's training (2026-12-02). The training batch fits by construction.
    """
    return max(1, min(cfg.eval_batch_size, per_process_batch(cfg.batch_size, world_size)))


def train_sft(spec: Spec, run: RunDir, *, resume: bool = False, progress: bool = True,
              callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Fine-tune the causal LM ``spec.model`` on ``run``'s question/answer splits into ``run.model_dir``.

    Long because it is the classifier's ``train`` step for step (read, build, Trainer, train,
    summarize, save), over the shared helpers, so the two stay easy to compare.

    Same contract as :func:`lmforge.train.train` (resume, distributed, rank 0 writes); the best
    checkpoint is the one with the lowest validation loss, and early stopping watches it.

    Returns:
        The training summary also stored in the manifest under ``train`` (with ``train_tokens``,
        the response and prompt tokens the model read, and ``tokens_per_second``).
    """
    torch = require("torch", extra="train", purpose="Training")
    cfg = spec.train
    rank, world_size = world()
    per_process_batch(cfg.batch_size, world_size)
    method = get_method(cfg.method)
    train_rows, val_rows = read_examples(run, "train"), read_examples(run, "val")
    if not train_rows:
        raise DataError(f"{run.split_path('train')} is empty: nothing to train on.")
    base_path = resolve_model(spec.model.name)
    base_digest = base_model_digest(base_path)
    checkpoint = _start_checkpoint(run, resume, rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    tokenizer = load_tokenizer(base_path)
    limit = context_limit(spec, base_path)
    train_set, notes = _dataset(tokenizer, train_rows, spec, limit)
    val_set = _dataset(tokenizer, val_rows, spec, limit)[0] if val_rows else None
    for note in notes:
        logger.warning(note)
    model = _build_causal_lm(spec, base_path, method)

    has_val = val_set is not None
    own, writer = _callbacks(spec, run, method, rank, progress, has_val=has_val)
    args = _training_args(
        spec, run, precision, device, has_val, best_metric="loss", greater_is_better=False,
        prediction_loss_only=True,  # never gather (batch x length x vocab) logits at evaluation
        per_device_eval_batch_size=eval_rows(cfg, world_size),
        # Packed rows hold no padding (and no attention mask): count every token; padded ones, the real ones.
        include_num_input_tokens_seen="all" if cfg.packing else "non_padding",
    )
    trainer, result, seconds = _fit(spec, model, args, train_set, val_set, sft_collator(tokenizer, cfg.packing),
                                   tokenizer, [*own, *callbacks], writer, checkpoint)
    summary = _summary(spec, run, trainer, result, seconds, precision, device, world_size, len(train_set), checkpoint)
    summary.pop("best_val_macro_f1", None)
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    summary.update({
        "task": "generate",
        "best_val_loss": trainer.state.best_metric,
        "train_tokens": tokens,
        "tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
        "packing": cfg.packing,
        "max_length": limit,
        "warnings": notes,
        BASE_DIGEST: base_digest,
    })
    if rank != 0:
        return summary
    _base_config(trainer.model).use_cache = True  # generation wants its KV cache back (a full save keeps it)
    extra = {"kind": "causal-lm", "task": "generate", "system": spec.data.system,
             "chat_template": getattr(tokenizer, "chat_template", None)}
    _save_model(run, spec, method, trainer.model, tokenizer, None, base_path, base_digest, extra)
    return _finish(run, trainer, summary)
