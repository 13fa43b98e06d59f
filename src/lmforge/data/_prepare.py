"""The prepare stage: raw labeled text in, clean deduplicated stratified splits out.

load -> clean -> dedupe -> check labels -> subsample -> split -> leakage check ->
augment (train only) -> write ``RUN/data/`` atomically -> record it in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.config import DataConfig, Spec
from lmforge.data._augment import augment
from lmforge.data._clean import clean_rows
from lmforge.data._dedupe import find_duplicates, find_leakage
from lmforge.data._io import read_table
from lmforge.data._prepare_gen import ExampleCheck, prepare_generation
from lmforge.data._readability import (
    check_or_raise,
    choose_model,
    hard_to_read_message,
    load_tokenizer,
    readability,
    script_shares,
)
from lmforge.data._report import class_counts, length_stats, plot_class_balance, plot_text_length
from lmforge.data._split import stratified_sample, stratified_split
from lmforge.errors import DataError, MissingExtraError
from lmforge.guard.pii import PrivacyPolicy, redact_texts
from lmforge.rundir import LABELS, SPLITS, RunDir, atomic_write_json

__all__ = ["prepare"]

logger = logging.getLogger(__name__)


def _check_labels(labels: list[str], cfg: DataConfig, source: str) -> None:
    counts = Counter(labels)
    after = "cleaning and deduplication" if cfg.dedupe else "cleaning"
    if len(counts) < 2:
        ((only, n),) = counts.items()
        raise DataError(
            f"{source} has a single label after {after}: '{only}' ({n} examples). A classifier needs at "
            f"least two; check that data.label_column ('{cfg.label_column}') is the label column."
        )
    rare = sorted((label, n) for label, n in counts.items() if n < cfg.min_per_class)
    if rare:
        listed = ", ".join(f"'{label}' ({n})" for label, n in rare)
        raise DataError(
            f"{len(rare)} label(s) of {source} have fewer than data.min_per_class={cfg.min_per_class} examples "
            f"after {after}: {listed}. Drop these rows or merge the labels into others, "
            "or lower data.min_per_class."
        )


@dataclass
class _Part:
    """Texts and labels of one split (or of the pool before splitting), with their signatures."""

    texts: list[str]
    labels: list[str]
    sig: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> _Part:
        picked = rows.tolist()
        return _Part(
            [self.texts[i] for i in picked],
            [self.labels[i] for i in picked],
            self.sig[rows] if self.sig is not None else None,
        )


def _write_jsonl(path: Path, part: _Part) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for text, label in zip(part.texts, part.labels, strict=True):
            fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update((folder / f"{split}.jsonl").read_bytes())
    return digest.hexdigest()


def _redact_pii(cfg: DataConfig, cleaned: Any) -> dict[str, Any]:
    """Apply ``data.pii`` to the cleaned texts in place; the entity counts for the report."""
    if cfg.pii != "redact":
        return {"policy": "keep"}
    cleaned.texts, counts = redact_texts(cleaned.texts, PrivacyPolicy(mode=cfg.pii_mode))
    return {"policy": "redact", "mode": cfg.pii_mode, "entities": dict(sorted(counts.items()))}


def _test_file(
    cfg: DataConfig, classes: list[str], source: str, notes: list[str]
) -> tuple[_Part, dict[str, Any]]:
    """The cleaned ``data.test_path`` (not deduplicated: it is the user's benchmark) and its report."""
    table = read_table(cfg, cfg.test_path, key="data.test_path")
    cleaned = clean_rows(table.texts, table.labels, max_chars=cfg.max_chars, source=table.source)
    pii = _redact_pii(cfg, cleaned)
    unseen = sorted(set(cleaned.labels) - set(classes))
    if unseen:
        raise DataError(
            f"{table.source} (data.test_path) has labels that {source} lacks: "
            f"{', '.join(repr(u) for u in unseen)}. A model cannot learn them; fix or drop those rows."
        )
    notes.extend(cleaned.warnings)
    info = {
        "source": table.source,
        "encoding": table.encoding,
        "rows_read": len(table.texts),
        "dropped": {"missing_label": cleaned.missing_label, "empty_text": cleaned.empty_text},
        "truncated": cleaned.truncated,
        "pii": pii,
    }
    return _Part(cleaned.texts, cleaned.labels), info


def _remove_leakage(cfg: DataConfig, parts: dict[str, _Part], notes: list[str]) -> tuple[dict[str, int], int]:
    """Count val/test texts that duplicate a training text; drop them when ``data.dedupe`` is on."""
    leakage: dict[str, int] = {}
    removed = 0
    train = parts["train"]
    for name in ("val", "test"):
        part = parts[name]
        leak = find_leakage(
            train.texts,
            part.texts,
            threshold=cfg.near_duplicate_threshold,
            train_sig=train.sig,
            other_sig=part.sig,
        )
        leakage[f"{name}_exact"] = int(leak.exact.sum())
        leakage[f"{name}_near"] = int(leak.near.sum())
        leaked = leak.exact | leak.near
        if not leaked.any():
            continue
        action = "removed" if cfg.dedupe else "kept, since data.dedupe is off"
        notes.append(
            f"{int(leaked.sum())} {name} texts duplicate a training text (exactly or nearly); {action}."
        )
        logger.warning(notes[-1])
        if cfg.dedupe:
            parts[name] = part.take(np.flatnonzero(~leaked))
            removed += int(leaked.sum())
    return leakage, removed


def prepare(spec: Spec, run: RunDir, *, check_examples: ExampleCheck | None = None) -> dict[str, Any]:
    """Load, clean, deduplicate, split and augment ``spec.data`` into ``run.data_dir`` (``task:
    generate``: :func:`prepare_generation`, with ``check_examples`` as its pre-write check).

    Long because it is the stage's one sequence of steps (read, clean, redact, dedupe, sample,
    split, leakage, readability, augment, write), each a call, best read top to bottom.

    Writes ``train/val/test.jsonl`` (``{"text", "label"}`` per line), ``labels.json``,
    ``data_report.json``, ``class_balance.png`` and ``text_length.png`` through
    :meth:`RunDir.stage`, so a failure leaves any previous ``data/`` untouched, then records
    the source, a fingerprint of the splits, their sizes and the labels in the manifest.

    Returns:
        The data report (also written to ``data_report.json``).

    Raises:
        DataError: the data cannot be used as asked; the message says what to change.
    """
    if spec.task == "generate":
        return prepare_generation(spec, run, check=check_examples)
    cfg = spec.data
    started = time.perf_counter()
    table = read_table(cfg)
    cleaned = clean_rows(table.texts, table.labels, max_chars=cfg.max_chars, source=table.source)
    notes = list(cleaned.warnings)
    pii = _redact_pii(cfg, cleaned)
    pool, dups = _dedupe(cfg, cleaned, notes)
    _check_labels(pool.labels, cfg, table.source)
    classes = sorted(set(pool.labels))

    subsampled = 0
    if cfg.max_examples is not None and len(pool.texts) > cfg.max_examples:
        subsampled = len(pool.texts) - cfg.max_examples
        pool = pool.take(
            stratified_sample(pool.labels, cfg.max_examples, seed=cfg.seed, min_per_class=cfg.min_per_class)
        )
    parts, test_file = _split(cfg, pool, classes, table.source, notes)
    leakage, removed = _remove_leakage(cfg, parts, notes)
    language = script_shares(parts["train"].texts)
    chosen = choose_model(spec, language)
    if chosen:
        notes.append(chosen)
        logger.warning(chosen)
    readable = _readability(spec, parts["train"].texts, notes)
    lengths = {"all": length_stats([t for s in SPLITS for t in parts[s].texts]),
               **{s: length_stats(parts[s].texts) for s in SPLITS}}
    augmented = _augment_train(cfg, parts)

    counts = {s: len(parts[s].texts) for s in SPLITS}
    report: dict[str, Any] = {
        "source": table.source,
        "encoding": table.encoding,
        "rows_read": len(table.texts),
        "rows_after_cleaning": len(cleaned.texts),
        "dropped": {"missing_label": cleaned.missing_label, "empty_text": cleaned.empty_text,
                    "duplicates": (dups.exact + dups.near) if cfg.dedupe else 0, "subsampled": subsampled,
                    "leakage": removed},
        "truncated": cleaned.truncated,
        "pii": pii,
        "dedupe": cfg.dedupe,
        "near_duplicate_threshold": cfg.near_duplicate_threshold,
        "exact_duplicates": dups.exact,
        "near_duplicates": dups.near,
        "conflicting_label_groups": dups.conflicting_groups,
        "conflicting_label_examples": dups.conflict_examples,
        "leakage": leakage,
        "test_file": test_file,
        "augmented": augmented,
        "counts": counts,
        "class_counts": {s: class_counts(parts[s].labels, classes) for s in SPLITS},
        "text_length": lengths,
        "labels": classes,
        "language": language,
        "readability": readable,
        "seed": cfg.seed,
        "warnings": notes,
    }
    _write_data(run, parts, classes, report, started)
    run.update_manifest(
        data={
            "source": table.source,
            "test_source": test_file["source"] if test_file else None,
            "fingerprint": report["fingerprint"],
            "counts": counts,
            "labels": classes,
            "encoding": table.encoding,
        }
    )
    logger.info("prepared %s: train %d, val %d, test %d (%d labels) in %.1fs", table.source, counts["train"],
                counts["val"], counts["test"], len(classes), report["seconds"])
    return report


def _readability(spec: Spec, texts: list[str], notes: list[str]) -> dict[str, Any] | None:
    """The readability check on the training split (before augmentation), with the base model's tokenizer.

    Stops (:class:`DataError`, exit 2) when the model cannot read the data and may not extend its
    vocabulary; notes a warning, or that training will extend the vocabulary. Skipped (None) for
    ``task: generate`` and when the ``train`` extra (the tokenizer) is not installed.
    """
    if spec.task == "generate":
        return None
    try:
        tokenizer = load_tokenizer(spec.model.name)
    except MissingExtraError as exc:
        notes.append(f"readability check skipped: {exc}")
        logger.warning(notes[-1])
        return None
    stats = readability(tokenizer, texts, spec.model.max_length)
    decision = check_or_raise(stats, spec)
    stats = {"model": spec.model.name, **stats, "decision": decision}
    if decision == "extend":
        auto = " (model.extend_vocab: auto; the unknown share is above data.max_unknown_rate_stop)"
        notes.append(
            f"{spec.model.name} maps {stats['unknown_rate']:.1%} of the training tokens to {stats['unknown_token']}; "
            f"training will add the unknown characters to its vocabulary"
            f"{auto if spec.model.extend_vocab == 'auto' else ''}."
        )
    elif decision == "warn":
        notes.append(hard_to_read_message(spec.model.name, stats))
    if decision != "ok":
        logger.warning(notes[-1])
    return stats


def _dedupe(cfg: DataConfig, cleaned: Any, notes: list[str]) -> tuple[_Part, Any]:
    """The pool of texts to split: duplicates dropped (majority label per group) when ``data.dedupe``."""
    dups = find_duplicates(cleaned.texts, cleaned.labels, threshold=cfg.near_duplicate_threshold)
    if dups.conflicting_groups:
        notes.append(
            f"{dups.conflicting_groups} duplicate groups carry conflicting labels; "
            "each kept text takes its group's majority label"
            + ("." if cfg.dedupe else " only if data.dedupe is on (it is off: all copies kept as labeled).")
        )
        logger.warning(notes[-1])
    labels = list(cleaned.labels)
    if cfg.dedupe:
        for row, label in dups.majority.items():
            labels[row] = label
    pool = _Part(cleaned.texts, labels, dups.signatures)
    if cfg.dedupe:
        pool = pool.take(np.flatnonzero(dups.keep))
    return pool, dups


def _split(cfg: DataConfig, pool: _Part, classes: list[str], source: str,
           notes: list[str]) -> tuple[dict[str, _Part], dict[str, Any] | None]:
    """Stratified train/val/test parts; the test part comes from ``data.test_path`` when set."""
    test_file: dict[str, Any] | None = None
    test_fraction = 0.0 if cfg.test_path is not None else cfg.test_fraction
    train_rows, val_rows, test_rows = stratified_split(
        pool.labels, val_fraction=cfg.val_fraction, test_fraction=test_fraction, seed=cfg.seed
    )
    parts = {"train": pool.take(train_rows), "val": pool.take(val_rows), "test": pool.take(test_rows)}
    if cfg.test_path is not None:
        parts["test"], test_file = _test_file(cfg, classes, source, notes)
    return parts, test_file


def _augment_train(cfg: DataConfig, parts: dict[str, _Part]) -> int:
    """Add ``data.augment`` copies to the training part (shuffled in, seeded); how many were added."""
    if not cfg.augment.enabled:
        return 0
    train = parts["train"]
    aug = cfg.augment
    new_texts, new_labels = augment(train.texts, train.labels, copies=aug.copies, alpha=aug.alpha, seed=cfg.seed)
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(train.texts) + len(new_texts))
    parts["train"] = _Part(train.texts + new_texts, train.labels + new_labels).take(order)
    return len(new_texts)


def _write_data(run: RunDir, parts: dict[str, _Part], classes: list[str], report: dict[str, Any],
                started: float) -> None:
    """Write ``data/`` atomically; the report gains the splits' fingerprint and the elapsed seconds."""
    with run.stage("data") as tmp:
        for split in SPLITS:
            _write_jsonl(tmp / f"{split}.jsonl", parts[split])
        atomic_write_json(tmp / LABELS, {"labels": classes})
        report["fingerprint"] = _fingerprint(tmp)
        plot_class_balance(report["class_counts"], classes, tmp / "class_balance.png")
        plot_text_length({s: parts[s].texts for s in SPLITS}, tmp / "text_length.png")
        report["seconds"] = round(time.perf_counter() - started, 2)
        atomic_write_json(tmp / "data_report.json", report)
