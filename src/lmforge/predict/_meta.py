"""A model folder's ``lmforge_model.json`` (a classifier's labels, max_length, format, base model;
a causal LM's format, base model, system prompt and chat template), and the digest of a base
model that a LoRA adapter is merged into."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lmforge.errors import RunDirError
from lmforge.guard import FileStamps
from lmforge.rundir import MODEL_META, read_json

__all__ = ["BASE_DIGEST", "CAUSAL_LM", "GENERATOR_FORMATS", "base_model_digest", "read_generator_meta",
           "read_model_meta"]

BASE_DIGEST = "base_model_sha256"
"""Key of ``lmforge_model.json`` (and of ``manifest.train``) holding the base model's digest."""
CAUSAL_LM = "causal-lm"
"""``kind`` of a generative model's ``lmforge_model.json`` (a classifier's has none, or ``encoder``)."""
GENERATOR_FORMATS = ("peft-adapter", "transformers")
"""``format`` of a causal LM's folder: a PEFT adapter on its base model, or full weights."""


def read_model_meta(folder: str | Path) -> dict[str, Any]:
    """A model folder's ``lmforge_model.json``, checked to hold a label list of strings.

    Args:
        folder: a run's ``model/`` or one ``compressed/<variant>/`` folder.

    Raises:
        RunDirError: the file is missing, not JSON or has no label list.
    """
    folder = Path(folder)
    path = folder / MODEL_META
    hint = "re-run `lmforge train`." if folder.name == "model" else "re-run `lmforge compress` to rebuild the variant."
    if not path.is_file():
        raise RunDirError(f"{folder} has no {MODEL_META}; {hint}")
    meta = read_json(path, hint=hint)
    if isinstance(meta, dict) and meta.get("kind") == CAUSAL_LM:
        raise RunDirError(f"{folder} holds a generative model (kind {CAUSAL_LM}), not a classifier; "
                          "load it with lmforge.predict.load_generator (`lmforge predict` picks it itself).")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise RunDirError(f"{path} has no label list; {hint}")
    out: dict[str, Any] = meta
    return out


def read_generator_meta(folder: str | Path) -> dict[str, Any]:
    """A causal LM folder's ``lmforge_model.json``, checked against the contract training writes.

    ``{"kind": "causal-lm", "format": "peft-adapter" | "transformers", "base_model": name,
    "base_model_sha256": digest, "max_length": int, "system": str | null, "chat_template": str, ...}``

    Raises:
        RunDirError: the file is missing, not JSON, or breaks the contract (every problem named).
    """
    folder = Path(folder)
    path = folder / MODEL_META
    hint = "re-run `lmforge train`."
    if not path.is_file():
        raise RunDirError(f"{folder} has no {MODEL_META}; {hint}")
    meta = read_json(path, hint=hint)
    if not isinstance(meta, dict):
        raise RunDirError(f"{path} must hold a JSON object; {hint}")
    problems = []
    if meta.get("kind") != CAUSAL_LM:
        problems.append(f"kind is {meta.get('kind')!r}, not {CAUSAL_LM!r}")
    if meta.get("format") not in GENERATOR_FORMATS:
        problems.append(f"format is {meta.get('format')!r}, not one of {', '.join(GENERATOR_FORMATS)}")
    if meta.get("format") == "peft-adapter" and not isinstance(meta.get("base_model"), str):
        problems.append("a peft-adapter needs base_model (the model it was trained on)")
    for key in ("system", "chat_template"):
        if meta.get(key) is not None and not isinstance(meta.get(key), str):
            problems.append(f"{key} must be text or null, got {type(meta.get(key)).__name__}")
    if "max_length" in meta and (not isinstance(meta["max_length"], int) or meta["max_length"] < 1):
        problems.append(f"max_length must be a positive integer, got {meta['max_length']!r}")
    if problems:
        raise RunDirError(f"{path} is no causal-LM model description: {'; '.join(problems)}. {hint.capitalize()}")
    out: dict[str, Any] = meta
    return out


def _base_files(folder: Path) -> list[Path]:
    """What ``from_pretrained`` reads of a base model: ``config.json`` and the safetensors weights."""
    return sorted(
        p for p in folder.iterdir()
        if p.name == "config.json" or p.name.endswith((".safetensors", ".safetensors.index.json"))
    )


def base_model_digest(folder: str | Path, stamps: FileStamps | None = None) -> str:
    """sha256 over the names and sha256 of a base model's ``config.json`` and safetensors weight files.

    Training records it (``base_model_sha256``); loading a LoRA adapter refuses a base whose
    digest changed since, because the adapter's weights only mean something on top of the
    exact base they were trained on, and the base lies outside the signed run.

    Args:
        folder: the base model's ``save_pretrained`` folder (from the catalog, or a local path).
        stamps: records what was hashed, to confirm after loading that the loader read the same
            files (a symlink is hashed at its target; the link itself is stamped too).

    Raises:
        RunDirError: the folder has no ``config.json``, or a file of it cannot be read.
    """
    folder = Path(folder)
    files = _base_files(folder) if folder.is_dir() else []
    if not any(p.name == "config.json" for p in files):
        raise RunDirError(f"Base model {folder} has no config.json; reinstall it (or point model.name at it again).")
    pins = stamps if stamps is not None else FileStamps(folder)
    digest = hashlib.sha256()
    for path in files:
        pins.add(path)
        target = path.resolve()
        digest.update(f"{path.name}\0{pins.hash(target)}\n".encode())
        if pins.unreadable:
            raise RunDirError(f"Cannot read base model file {path}: {next(iter(pins.unreadable.values()))}.")
    return digest.hexdigest()
