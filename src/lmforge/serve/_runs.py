"""What a registered version takes from its run directory: the path, the pinned variant, its labels, the
manifest's SHA-256 (compared again at every load, so a run that changed since is refused)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lmforge import predict
from lmforge.errors import RunDirError
from lmforge.predict import read_model_meta
from lmforge.rundir import FP32, MANIFEST, MODEL_META, RunDir

__all__ = ["FP32", "manifest_sha256", "read_labels", "resolve_variant", "run_directory"]


def resolve_variant(run: Path, variant: str | None) -> str:
    """The variant a version pins: ``variant``, else the run's selected one, else fp32.

    Raises:
        RunDirError: the run has no trained model or no such variant (the message lists them).
    """
    name, _folder = predict.resolve_variant(run, variant)
    return name


def read_labels(run: Path, variant: str) -> list[str]:
    """The label list of ``run``'s ``variant`` (none for a generative run), or :class:`RunDirError`."""
    if predict.run_kind(run) == predict.CAUSAL_LM:
        return []
    folder = RunDir(run).variant_dir(variant)
    labels: list[str] = read_model_meta(folder)["labels"]
    if len(labels) < 2:
        raise RunDirError(f"{folder / MODEL_META} must list at least two labels.")
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
    return hashlib.sha256((run / MANIFEST).read_bytes()).hexdigest()
