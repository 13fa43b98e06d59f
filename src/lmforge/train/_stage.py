"""The train stage: prepared splits + spec -> fine-tuned model in ``RUN/model``."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.catalog import resolve_model
from lmforge.config import Spec
from lmforge.data import check_or_raise, hard_to_read_message, readability
from lmforge.errors import ConfigError, DataError, RunDirError
from lmforge.metrics import macro_f1
from lmforge.predict import BASE_DIGEST, base_model_digest
from lmforge.rundir import LABELS, MODEL, MODEL_META, RunDir, atomic_write_json, read_labels, read_split
from lmforge.train._hardware import resolve_device, resolve_precision, world
from lmforge.train._methods import Method, get_method
from lmforge.train._module_methods import check_virtual_tokens

logger = logging.getLogger(__name__)

__all__ = ["per_process_batch", "train"]


def _set_dropout(config: Any, dropout: float) -> None:
    """Override every dropout probability the model config declares (hidden, attention...)."""
    for key, value in list(vars(config).items()):
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, dropout)


def _macro_f1(eval_pred: Any) -> dict[str, float]:
    logits, label_ids = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    pred = np.asarray(logits).argmax(-1)
    y = np.asarray(label_ids)
    return {"macro_f1": macro_f1(y, pred, int(np.asarray(logits).shape[-1])), "accuracy": float((pred == y).mean())}


def per_process_batch(batch_size: int, world_size: int) -> int:
    """``train.batch_size`` is the global batch: each of ``world_size`` processes takes an equal share."""
    if batch_size % world_size:
        raise ConfigError(
            f"train.batch_size {batch_size} does not split evenly over {world_size} processes; "
            f"use a multiple of {world_size} (it is the global batch, shared by all processes)."
        )
    return batch_size // world_size


def _training_args(spec: Spec, run: RunDir, precision: str, device: str, has_val: bool, *,
                   best_metric: str = "macro_f1", greater_is_better: bool = True, **more: Any) -> Any:
    """TrainingArguments from the spec; generative training picks its best model by lower ``loss``
    and passes its own extras (``prediction_loss_only``, token counting) through ``more``."""
    transformers = require("transformers", extra="train", purpose="Training")
    cfg = spec.train
    every = cfg.checkpoint_steps
    strategy = "steps" if every else "epoch"
    _, world_size = world()
    return transformers.TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        per_device_train_batch_size=per_process_batch(cfg.batch_size, world_size),
        per_device_eval_batch_size=more.pop("per_device_eval_batch_size", cfg.eval_batch_size),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        # The fused AdamW kernel runs on CPU too: the same update, ~10% faster per step here.
        optim={"adamw": "adamw_torch_fused", "sgd": "sgd", "rmsprop": "rmsprop"}[cfg.optimizer],
        lr_scheduler_type=cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else 0.0,
        eval_strategy=strategy if has_val else "no",
        eval_steps=every,
        save_strategy=strategy,
        save_steps=every,
        load_best_model_at_end=has_val,
        metric_for_best_model=best_metric if has_val else None,
        greater_is_better=greater_is_better,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=precision == "bf16",
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        # Under torchrun on CPU, processes talk over gloo (accelerate's default for CPU).
        ddp_backend="gloo" if device == "cpu" and world_size > 1 else None,
        disable_tqdm=True,
        save_only_model=False,
        **more,
    )


def _read_rows(run: RunDir) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Labels, train and val records; a label outside ``labels.json`` is an error."""
    labels = read_labels(run)
    rows = {split: read_split(run, split) for split in ("train", "val")}
    if not rows["train"]:
        raise DataError(f"{run.split_path('train')} is empty: nothing to train on.")
    for split, records in rows.items():
        bad = sorted({r["label"] for r in records} - set(labels))
        if bad:
            raise DataError(f"{run.split_path(split)} has labels not in labels.json: {bad}. Re-run lmforge prepare.")
    return labels, rows["train"], rows["val"]


def _start_checkpoint(run: RunDir, resume: bool, rank: int) -> Path | None:
    """The checkpoint to resume from; without ``resume``, rank 0 clears old checkpoints and logs."""
    from lmforge.train._trainer import latest_checkpoint  # torch: imported when training starts

    if resume:
        checkpoint = latest_checkpoint(run.checkpoints_dir)
        if checkpoint is None:
            raise RunDirError(
                f"Nothing to resume: {run.checkpoints_dir} holds no complete checkpoint. Run without --resume."
            )
        logger.info("resuming from %s", checkpoint)
        return checkpoint
    if rank == 0:  # the other ranks write nothing before the first checkpoint, after a barrier
        shutil.rmtree(run.checkpoints_dir, ignore_errors=True)
        shutil.rmtree(run.logs_dir, ignore_errors=True)
    return None


def _build_model(spec: Spec, base_path: Path, labels: list[str]) -> tuple[Any, Any]:
    """The pretrained model with a fresh ``len(labels)``-way head, and its tokenizer."""
    transformers = require("transformers", extra="train", purpose="Training")
    transformers.set_seed(spec.train.seed)  # before the head is initialized: same seed, same weights
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_path)
    config = transformers.AutoConfig.from_pretrained(
        base_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    if spec.train.dropout is not None:
        _set_dropout(config, spec.train.dropout)
    transformers.logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    transformers.utils.logging.disable_progress_bar()  # weight loading/saving bars; ours shows the steps
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_path, config=config, use_safetensors=True
    )
    return model, tokenizer


def _readable_model(spec: Spec, model: Any, tokenizer: Any, texts: list[str]) -> tuple[dict[str, Any], list[int]]:
    """The readability check on the training texts; extends the vocabulary when it decides so.

    Returns the record kept in the manifest (``before``, ``decision``, and after an extension
    ``after`` and ``extension``) and the ids of the added tokens (empty when none were added).
    """
    from lmforge.train._vocab import extend_vocabulary  # torch at its top

    before = readability(tokenizer, texts, spec.model.max_length)
    decision = check_or_raise(before, spec)
    record: dict[str, Any] = {"before": before, "decision": decision}
    if decision == "warn":
        logger.warning(hard_to_read_message(spec.model.name, before))
    if decision != "extend":
        return record, []
    extension = extend_vocabulary(model, tokenizer, texts, spec.model.extend_vocab_max_tokens, spec.train.seed)
    after = readability(tokenizer, texts, spec.model.max_length)
    record.update(after=after, extension=extension.as_dict())
    why = " (model.extend_vocab: auto)" if spec.model.extend_vocab == "auto" else ""
    logger.warning(
        "%s read %.1f%% of the training tokens as %s: added %d characters to its vocabulary%s; unknown now %.1f%%.",
        spec.model.name, 100 * before["unknown_rate"], before["unknown_token"], len(extension.tokens), why,
        100 * after["unknown_rate"],
    )
    return record, extension.token_ids


def _callbacks(spec: Spec, run: RunDir, method: Method, rank: int, progress: bool,
               has_val: bool) -> tuple[list[Any], Any]:
    """Trainer callbacks (log file, the trackers on rank 0, progress, early stopping, the method's own)
    and the TB writer."""
    transformers = require("transformers", extra="train", purpose="Training")
    from lmforge.train._callbacks import JsonlLogCallback, ProgressBarCallback
    from lmforge.train._track import tracking_callbacks  # transformers at its top

    callbacks: list[Any] = [JsonlLogCallback(run.logs_dir / "train.log")]
    trackers, writer = tracking_callbacks(spec, run, rank)  # train.track: TensorBoard, MLflow
    callbacks += trackers
    if progress:
        callbacks.append(ProgressBarCallback())
    if has_val and spec.train.early_stopping_patience:
        callbacks.append(transformers.EarlyStoppingCallback(early_stopping_patience=spec.train.early_stopping_patience))
    method_callbacks = getattr(method, "callbacks", None)  # AdaLoRA's rank allocation
    if method_callbacks is not None:
        callbacks.extend(method_callbacks(spec.train))
    return callbacks, writer


def _save_model(run: RunDir, spec: Spec, method: Method, model: Any, tokenizer: Any, labels: list[str] | None,
                base_path: Path, base_digest: str, extra: dict[str, Any] | None = None) -> None:
    """Write ``model/`` atomically: weights (or adapter), tokenizer, labels and ``lmforge_model.json``.

    ``base_model_sha256`` is the digest of the base model trained on: a LoRA adapter is loaded
    on top of the base again, from outside the run, and loading refuses a base that changed.
    A causal LM has no labels (``labels`` None: no ``labels.json``); ``extra`` adds its keys
    (kind, task, system, chat template) to ``lmforge_model.json``.
    """
    meta: dict[str, Any] = {
        "method": spec.train.method,
        "base_model": spec.model.name,
        "base_model_path": str(base_path),
        BASE_DIGEST: base_digest,
        "max_length": spec.model.max_length,
        **({"labels": labels} if labels is not None else {}),
        "format": getattr(method, "format", "peft-adapter"),  # what method.save writes
        **(extra or {}),
    }
    with run.stage(MODEL) as tmp:
        method.save(model, tmp)
        tokenizer.save_pretrained(tmp)
        if labels is not None:
            atomic_write_json(tmp / LABELS, {"labels": labels})
        atomic_write_json(tmp / MODEL_META, meta)


def train(spec: Spec, run: RunDir, *, resume: bool = False, progress: bool = True,
          callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Fine-tune ``spec.model`` on ``run``'s prepared splits and save it to ``run.model_dir``
    (``task: generate``: a causal LM on question/answer pairs, ``_sft.train_sft``).

    Long because it is the stage's one sequence (read splits, check readability and extend the
    vocabulary, build, encode, train, save), each step a call, best read top to bottom.

    Args:
        spec: the resolved spec.
        run: a run directory that went through ``prepare``.
        resume: continue from the newest complete checkpoint, bit-exactly.
        progress: show a progress bar on stderr.
        callbacks: more ``transformers.TrainerCallback`` objects, after lmforge's own (``lmforge
            tune`` passes one that reports each evaluation to its trial and stops a pruned one).

    Distributed: launched by ``torchrun --nproc-per-node N`` (or ``accelerate launch``, or
    ``lmforge train RUN --nproc-per-node N``), every process trains on its share of each global
    batch (``train.batch_size`` is split between them; gradients are averaged by DDP), and only
    rank 0 writes checkpoints' shared files, logs, ``model/`` and the manifest.

    Returns:
        The training summary also stored in the manifest under ``train``.
    """
    if spec.task == "generate":
        from lmforge.train._sft import train_sft  # here: _sft imports this module
        return train_sft(spec, run, resume=resume, progress=progress, callbacks=callbacks)
    torch = require("torch", extra="train", purpose="Training")
    transformers = require("transformers", extra="train", purpose="Training")
    from lmforge.train._encode import encode  # these import torch and transformers at their top

    cfg = spec.train
    rank, world_size = world()
    per_process_batch(cfg.batch_size, world_size)  # fail before anything loads
    method = get_method(cfg.method)
    labels, train_rows, val_rows = _read_rows(run)
    base_path = resolve_model(spec.model.name)
    if problem := check_virtual_tokens(spec, base_path):  # a prefix or prompt that does not fit
        raise ConfigError(problem)
    base_digest = base_model_digest(base_path)  # before it is read: the weights this run starts from
    checkpoint = _start_checkpoint(run, resume, rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model, tokenizer = _build_model(spec, base_path, labels)
    readable, new_ids = _readable_model(spec, model, tokenizer, [r["text"] for r in train_rows])
    model = method.wrap(model, cfg, new_token_ids=new_ids) if new_ids else method.wrap(model, cfg)

    label_ids = {label: i for i, label in enumerate(labels)}
    max_len = spec.model.max_length
    train_set = encode(tokenizer, [r["text"] for r in train_rows], max_len, [label_ids[r["label"]] for r in train_rows])
    val_set = (
        encode(tokenizer, [r["text"] for r in val_rows], max_len, [label_ids[r["label"]] for r in val_rows])
        if val_rows
        else None
    )
    own, writer = _callbacks(spec, run, method, rank, progress, has_val=val_set is not None)
    trainer, result, seconds = _fit(
        spec, model, _training_args(spec, run, precision, device, has_val=val_set is not None), train_set, val_set,
        transformers.DataCollatorWithPadding(tokenizer), tokenizer, [*own, *callbacks], writer, checkpoint,
        compute_metrics=_macro_f1 if val_set is not None else None,
    )
    summary = _summary(spec, run, trainer, result, seconds, precision, device, world_size, len(train_set), checkpoint)
    summary[BASE_DIGEST] = base_digest
    summary["readability"] = readable
    if rank != 0:  # one writer: rank 0 saves the model and the manifest
        return summary
    vocab = readable.get("extension")
    # An extended vocabulary: the base model is resized to vocab_size before an adapter loads.
    _save_model(run, spec, method, trainer.model, tokenizer, labels, base_path, base_digest,
                {"vocab": vocab} if vocab else None)
    return _finish(run, trainer, summary)


def _fit(spec: Spec, model: Any, args: Any, train_set: Any, val_set: Any, collator: Any, tokenizer: Any,
        callbacks: list[Any], writer: Any, checkpoint: Path | None,
        compute_metrics: Any = None) -> tuple[Any, Any, float]:
    """Train with ``LmforgeTrainer`` (the classifier and SFT alike), from ``checkpoint`` when resuming.

    Returns the trainer, its ``train()`` result and the seconds training took; the TensorBoard
    ``writer`` is closed afterwards.
    """
    transformers = require("transformers", extra="train", purpose="Training")
    from lmforge.train._trainer import LmforgeTrainer  # torch: imported when training starts

    cfg = spec.train
    trainer = LmforgeTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        fgm_epsilon=cfg.adversarial_epsilon if cfg.adversarial == "fgm" else None,
        group_by_length=cfg.group_by_length,
        keep_checkpoints=cfg.save_total_limit,
    )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    if checkpoint is not None:
        for callback in trainer.callback_handler.callbacks:  # what LmforgeTrainer saved of them
            load_state = getattr(callback, "load_state", None)
            if load_state is not None:
                load_state(checkpoint, trainer.model)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - start
    if writer is not None:
        writer.close()
    return trainer, result, seconds


def _finish(run: RunDir, trainer: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """After rank 0 saved ``model/``: the trainer state into the logs, the checkpoints removed
    (kept with ``LMFORGE_KEEP_CHECKPOINTS``), the summary into the manifest; returns the summary."""
    trainer.state.save_to_json(str(run.logs_dir / "trainer_state.json"))
    if not os.environ.get("LMFORGE_KEEP_CHECKPOINTS"):
        shutil.rmtree(run.checkpoints_dir, ignore_errors=True)
    run.update_manifest(train=summary)
    from lmforge.train._track import finish_tracking  # transformers at its top

    finish_tracking(trainer, summary)
    return summary


def _summary(spec: Spec, run: RunDir, trainer: Any, result: Any, seconds: float, precision: str, device: str,
             world_size: int, n_train: int, checkpoint: Path | None) -> dict[str, Any]:
    """What the manifest records under ``train``."""
    torch = require("torch", extra="train", purpose="Training")
    final = trainer.model
    trainable = sum(p.numel() for p in final.parameters() if p.requires_grad)
    total = sum(p.numel() for p in final.parameters())
    return {
        "method": spec.train.method,
        "base_model": spec.model.name,
        "precision": precision,
        "device": device,
        "world_size": world_size,
        "steps": int(trainer.state.global_step),
        "epochs": round(float(trainer.state.epoch or 0.0), 4),
        "seconds": round(seconds, 2),
        "train_loss": round(float(result.training_loss), 6),
        "best_val_macro_f1": trainer.state.best_metric,
        "best_checkpoint_step": trainer.state.best_global_step,
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "examples_per_second": round(n_train * float(trainer.state.epoch or 0.0) / max(seconds, 1e-9), 2),
        "resumed_from": checkpoint.name if checkpoint else None,
        # Which prepared data this model saw: a later `prepare` changes the manifest's fingerprint.
        "data_fingerprint": run.read_manifest().get("data", {}).get("fingerprint"),
        "threads": torch.get_num_threads(),
    }
