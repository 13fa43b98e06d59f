"""The prepare stage for ``task: generate``: question/answer rows in, clean deduplicated splits out.

read -> clean (prompt and answer; an empty one is an error naming its row) -> PII policy ->
exact + near dedupe on the prompt -> subsample -> seeded random split -> leakage check on the
prompt -> the caller's check (prompt length in tokens, which needs the model's chat template)
-> write ``RUN/data/`` atomically -> record it in the manifest.

The split is random, not stratified: there is no label to stratify on, and stratifying on the
answer would put every distinct answer into training. Augmentation is off (the spec refuses it):
word swaps and deletions would corrupt the answers the model learns to write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.config import DataConfig, Spec
from lmforge.data._clean import clean_text
from lmforge.data._dedupe import find_duplicates, find_leakage
from lmforge.data._examples import ROLES, example_prompt
from lmforge.data._gen_io import RawRow, read_gen_table
from lmforge.data._report import length_stats
from lmforge.data._split import stratified_split
from lmforge.errors import DataError
from lmforge.guard.pii import PrivacyPolicy, redact_texts
from lmforge.rundir import SPLITS, RunDir, atomic_write_json

__all__ = ["ExampleCheck", "prepare_generation"]

logger = logging.getLogger(__name__)

ExampleCheck = Callable[[list[dict[str, Any]], list[str]], list[str]]
"""``check(examples, wheres) -> warnings``: raises ``DataError`` naming the row (``wheres[i]``)
of an example the model cannot take; the pipeline passes the train stage's prompt-length check."""

_BLANK_LINES = re.compile(r"\n{3,}")


def clean_answer(text: str) -> str:
    """``clean_text`` line by line: an answer keeps its line breaks (numbered steps), at most one blank line."""
    lines = [clean_text(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _turns(row: RawRow) -> list[dict[str, str]]:
    turns = row.messages
    if isinstance(turns, str):
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError:
            raise DataError(f"{row.where}: the messages cell is not a JSON list of turns.") from None
    if hasattr(turns, "tolist"):
        turns = turns.tolist()
    if not isinstance(turns, list) or len(turns) < 2:
        raise DataError(
            f"{row.where}: messages must be a list of at least two turns (a user turn and the assistant's answer)."
        )
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise DataError(
                f"{row.where}: messages[{i}] must be {{\"role\": one of {', '.join(ROLES)}, \"content\": text}}, "
                f"got {turn!r}."
            )
        out.append({"role": str(turn["role"]), "content": clean_answer(str(turn["content"]))})
    if out[-1]["role"] != "assistant":
        raise DataError(f"{row.where}: the last turn must be the assistant's answer, got role '{out[-1]['role']}'.")
    if not out[-1]["content"]:
        raise DataError(f"{row.where} has an empty response (the last, assistant turn). Fill it in or drop the row.")
    return out


def _clean(rows: list[RawRow], cfg: DataConfig) -> tuple[list[dict[str, Any]], list[str], int]:
    """Checked, normalized examples, where each came from, and how many texts were cut to ``max_chars``."""
    examples: list[dict[str, Any]] = []
    truncated = 0

    def cut(text: str) -> str:
        nonlocal truncated
        if len(text) > cfg.max_chars:
            truncated += 1
            return text[: cfg.max_chars].rstrip()
        return text

    for row in rows:
        if row.chat:
            if row.messages is None or row.messages == "":
                raise DataError(f"{row.where} has no messages (data.messages_column '{cfg.messages_column}' is "
                                "empty). Fill it in or drop the row.")
            turns = _turns(row)
            examples.append({"messages": [{"role": t["role"], "content": cut(t["content"])} for t in turns]})
            continue
        prompt = clean_text(str(row.prompt)) if row.prompt is not None else ""
        response = clean_answer(str(row.response)) if row.response is not None else ""
        if not prompt:
            raise DataError(f"{row.where} has an empty prompt (data.prompt_column '{cfg.prompt_column}'). "
                            "Fill it in or drop the row.")
        if not response:
            raise DataError(f"{row.where} has an empty response (data.response_column '{cfg.response_column}'). "
                            "Fill it in or drop the row.")
        examples.append({"prompt": cut(prompt), "response": cut(response)})
    if not examples:
        raise DataError("The data holds no rows: nothing to train on.")
    return examples, [r.where for r in rows], truncated


def _texts(example: dict[str, Any]) -> list[str]:
    return [t["content"] for t in example["messages"]] if "messages" in example else [example["prompt"], example["response"]]


def _redact(cfg: DataConfig, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply ``data.pii`` to every prompt, answer and turn in place; the entity counts for the report."""
    if cfg.pii != "redact":
        return {"policy": "keep"}
    flat = [text for example in examples for text in _texts(example)]
    redacted, counts = redact_texts(flat, PrivacyPolicy(mode=cfg.pii_mode))
    it = iter(redacted)
    for example in examples:
        if "messages" in example:
            for turn in example["messages"]:
                turn["content"] = next(it)
        else:
            example["prompt"], example["response"] = next(it), next(it)
    return {"policy": "redact", "mode": cfg.pii_mode, "entities": dict(sorted(counts.items()))}


def prompt_key(example: dict[str, Any]) -> str:
    """The text deduplication and the leakage check compare: the prompt (every turn before the answer)."""
    prompt = example_prompt(example)
    return prompt if isinstance(prompt, str) else "\n".join(t["content"] for t in prompt)


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update((folder / f"{split}.jsonl").read_bytes())
    return digest.hexdigest()


def prepare_generation(spec: Spec, run: RunDir, *, check: ExampleCheck | None = None) -> dict[str, Any]:
    """Load, clean, deduplicate and split ``spec.data`` for ``task: generate`` into ``run.data_dir``.

    Long because it reads as the stage's steps in order (see the module docstring), with the
    report assembled where each number is known.

    Writes ``train/val/test.jsonl`` (``{"prompt", "response"}`` or ``{"messages"}`` per line) and
    ``data_report.json`` through :meth:`RunDir.stage` (a failure leaves any previous ``data/``),
    then records the source, the splits' fingerprint and sizes in the manifest.

    Args:
        check: run over every kept example before anything is written (see :data:`ExampleCheck`).

    Raises:
        DataError: missing columns, an empty prompt or response, a bad turn, or what ``check`` refuses.
    """
    cfg = spec.data
    started = time.perf_counter()
    rows, source, encoding = read_gen_table(cfg)
    examples, wheres, truncated = _clean(rows, cfg)
    pii = _redact(cfg, examples)
    notes: list[str] = []
    if truncated:
        notes.append(f"{truncated} texts of {source} are longer than data.max_chars={cfg.max_chars} and were cut.")
    keys = [prompt_key(e) for e in examples]
    dups = find_duplicates(keys, [""] * len(keys), threshold=cfg.near_duplicate_threshold)
    pool = np.flatnonzero(dups.keep) if cfg.dedupe else np.arange(len(examples))
    if dups.exact + dups.near:
        notes.append(f"{dups.exact} exact and {dups.near} near-duplicate prompts"
                     + (" were dropped." if cfg.dedupe else " kept, since data.dedupe is off."))
    subsampled = 0
    if cfg.max_examples is not None and len(pool) > cfg.max_examples:
        subsampled = len(pool) - cfg.max_examples
        pool = np.sort(np.random.default_rng(cfg.seed).permutation(pool)[: cfg.max_examples])
    test_fraction = 0.0 if cfg.test_path is not None else cfg.test_fraction
    # One class: the stratified split is a seeded random split of the rows.
    order = stratified_split([""] * len(pool), val_fraction=cfg.val_fraction, test_fraction=test_fraction, seed=cfg.seed)
    parts = {split: pool[rows_].tolist() for split, rows_ in zip(SPLITS, order, strict=True)}
    split_examples = {split: [examples[i] for i in parts[split]] for split in SPLITS}
    split_wheres = {split: [wheres[i] for i in parts[split]] for split in SPLITS}
    if cfg.test_path is not None:
        test_rows, _test_source, _ = read_gen_table(cfg, cfg.test_path, key="data.test_path")
        split_examples["test"], split_wheres["test"], _ = _clean(test_rows, cfg)
    leakage, removed = _remove_leakage(cfg, split_examples, split_wheres, notes)
    all_examples = [e for s in SPLITS for e in split_examples[s]]
    if check is not None:
        notes.extend(check(all_examples, [w for s in SPLITS for w in split_wheres[s]]))
    for note in notes:
        logger.warning(note)
    counts = {s: len(split_examples[s]) for s in SPLITS}
    if not counts["train"]:
        raise DataError(f"No training examples are left of {source}; give more rows or lower the held-out fractions.")
    report: dict[str, Any] = {
        "task": "generate",
        "source": source,
        "encoding": encoding,
        "shape": "messages" if "messages" in examples[0] else "prompt/response",
        "rows_read": len(rows),
        "dropped": {"duplicates": (dups.exact + dups.near) if cfg.dedupe else 0, "subsampled": subsampled,
                    "leakage": removed},
        "truncated": truncated,
        "pii": pii,
        "dedupe": cfg.dedupe,
        "near_duplicate_threshold": cfg.near_duplicate_threshold,
        "exact_duplicates": dups.exact,
        "near_duplicates": dups.near,
        "leakage": leakage,
        "counts": counts,
        "prompt_length": length_stats([prompt_key(e) for e in all_examples]),
        "response_length": length_stats([_texts(e)[-1] for e in all_examples]),
        "system": cfg.system,
        "seed": cfg.seed,
        "warnings": notes,
    }
    with run.stage("data") as tmp:
        for split in SPLITS:
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as fh:
                for example in split_examples[split]:
                    fh.write(json.dumps(example, ensure_ascii=False) + "\n")
        report["fingerprint"] = _fingerprint(tmp)
        report["seconds"] = round(time.perf_counter() - started, 2)
        atomic_write_json(tmp / "data_report.json", report)
    run.update_manifest(data={"source": source, "test_source": cfg.test_path, "fingerprint": report["fingerprint"],
                              "counts": counts, "task": "generate", "encoding": encoding})
    logger.info("prepared %s: train %d, val %d, test %d pairs in %.1fs", source, counts["train"], counts["val"],
                counts["test"], report["seconds"])
    return report


def _remove_leakage(cfg: DataConfig, examples: dict[str, list[dict[str, Any]]], wheres: dict[str, list[str]],
                    notes: list[str]) -> tuple[dict[str, int], int]:
    """Count val/test prompts that duplicate a training prompt; drop them when ``data.dedupe`` is on."""
    leakage: dict[str, int] = {}
    removed = 0
    train_keys = [prompt_key(e) for e in examples["train"]]
    for name in ("val", "test"):
        leak = find_leakage(train_keys, [prompt_key(e) for e in examples[name]], threshold=cfg.near_duplicate_threshold)
        leakage[f"{name}_exact"] = int(leak.exact.sum())
        leakage[f"{name}_near"] = int(leak.near.sum())
        leaked = leak.exact | leak.near
        if not leaked.any():
            continue
        notes.append(f"{int(leaked.sum())} {name} prompts duplicate a training prompt (exactly or nearly); "
                     + ("removed." if cfg.dedupe else "kept, since data.dedupe is off."))
        if cfg.dedupe:
            keep = np.flatnonzero(~leaked).tolist()
            examples[name] = [examples[name][i] for i in keep]
            wheres[name] = [wheres[name][i] for i in keep]
            removed += int(leaked.sum())
    return leakage, removed
