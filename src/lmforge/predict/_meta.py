"""A model folder's ``lmforge_model.json`` (labels, max_length, format, base model), and the digest
of a base model that a LoRA adapter is merged into."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lmforge.errors import RunDirError
from lmforge.guard import FileStamps
from lmforge.rundir import MODEL_META, read_json

__all__ = ["BASE_DIGEST", "base_model_digest", "read_model_meta"]

BASE_DIGEST = "base_model_sha256"
"""Key of ``lmforge_model.json`` (and of ``manifest.train``) holding the base model's digest."""


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
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise RunDirError(f"{path} has no label list; {hint}")
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
