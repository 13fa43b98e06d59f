"""What a registered version takes from its run directory: the path, the pinned variant, its labels, the
manifest's SHA-256 (compared again at every load, so a run that changed since is refused)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lmforge.errors import RunDirError

__all__ = ["FP32", "manifest_sha256", "read_labels", "resolve_variant", "run_directory"]

FP32 = "fp32"


def resolve_variant(run: Path, variant: str | None) -> str:
    """The variant a version pins: ``variant``, else the run's selected one, else fp32.

    Raises:
        RunDirError: the run has no trained model or no such variant (the message lists them).
    """
    from lmforge.compress._predictor import available_variants, read_selected

    if variant is None:
        selected = read_selected(run)
        variant = selected["variant"] if selected else FP32
    if variant == FP32:
        if not (run / "model" / "lmforge_model.json").is_file():
            raise RunDirError(
                f"{run} has no trained model (model/lmforge_model.json); run `lmforge train` first."
            )
        return FP32
    have = available_variants(run)
    if variant not in have:
        raise RunDirError(
            f"{run} has no compressed variant {variant!r}. Available: {', '.join([FP32, *have])}."
        )
    return variant


def read_labels(run: Path, variant: str) -> list[str]:
    """The label list of ``run``'s ``variant``, or :class:`RunDirError` saying what is missing."""
    folder = run / "model" if variant == FP32 else run / "compressed" / variant
    try:
        meta = json.loads((folder / "lmforge_model.json").read_text(encoding="utf-8"))
        labels = meta["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{folder} has no readable lmforge_model.json with a label list.") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) < 2:
        raise RunDirError(f"{folder}/lmforge_model.json must list at least two string labels.")
    return labels


def run_directory(path: str | Path) -> Path:
    """``path`` as an existing run directory (absolute), or :class:`RunDirError` saying why not."""
    try:
        run = Path(path).expanduser().resolve()
        exists = run.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, ~unknown-user, names too long...
        raise RunDirError(f"{str(path)[:200]!r} is not a usable path: {exc}") from None
    if not exists:
        raise RunDirError(f"Run directory {run} does not exist.")
    return run


def manifest_sha256(run: Path) -> str:
    """SHA-256 of ``RUN/manifest.json`` (what a signature covers)."""
    return hashlib.sha256((run / "manifest.json").read_bytes()).hexdigest()
