"""Reading a model folder's ``lmforge_model.json``: labels, max_length, format, base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.errors import RunDirError
from lmforge.rundir import MODEL_META, read_json

__all__ = ["read_model_meta"]


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
