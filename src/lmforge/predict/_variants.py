"""Which model folder of a run to load, and which backend loads it ("first match wins").

A run answers with its selected variant (``compressed/selected``), a named one
(``compressed/<name>/``) or ``fp32``, the run's own ``model/``. A folder is loaded by the
first backend that recognizes it: ``model.onnx`` -> onnxruntime (tokenizers + ORT only, no
torch in the process), then ``model.safetensors`` or a PEFT adapter -> torch. Each backend
lives in its own module, imported only when it is picked, so serving an ONNX variant never
imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import RunDirError
from lmforge.predict._protocol import Predictor
from lmforge.rundir import (
    COMPRESSED,
    FP32,
    MODEL_META,
    ONNX_FILE,
    SELECTED,
    VARIANT_META,
    WEIGHTS,
    RunDir,
    is_adapter_dir,
    read_json,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "available_variants",
    "load_model_folder",
    "load_predictor",
    "read_selected",
    "resolve_variant",
]

_COMPRESS_HINT = "re-run `lmforge compress`."


@dataclass(frozen=True)
class Backend:
    """One way to load a model folder."""

    name: str
    recognizes: Callable[[Path], bool]
    module: str
    """Module with ``load(folder) -> Predictor``, imported only when this backend is picked."""


BACKENDS: tuple[Backend, ...] = (
    Backend("onnxruntime", lambda d: (d / ONNX_FILE).is_file(), "lmforge.predict._onnx"),
    Backend("torch", lambda d: (d / WEIGHTS).is_file() or is_adapter_dir(d), "lmforge.predict._torch"),
)


def load_model_folder(folder: str | Path) -> Predictor:
    """The predictor of one model folder (``model/`` or a variant), by the first backend that recognizes it."""
    folder = Path(folder)
    for backend in BACKENDS:
        if backend.recognizes(folder):
            predictor: Predictor = importlib.import_module(backend.module).load(folder)
            return predictor
    raise RunDirError(
        f"{folder} holds no model file this version can load ({ONNX_FILE} or {WEIGHTS}); {_COMPRESS_HINT}"
    )


def _root(run: RunDir | str | Path) -> Path:
    return run.root if isinstance(run, RunDir) else Path(run)


def read_selected(run: RunDir | str | Path) -> dict[str, Any] | None:
    """The ``compressed/selected`` pointer (``{"variant", "path", "reason", ...}``), or None."""
    path = _root(run) / COMPRESSED / SELECTED
    if not path.is_file():
        return None
    data = read_json(path, hint=_COMPRESS_HINT)
    if not isinstance(data, dict) or not isinstance(data.get("variant"), str):
        raise RunDirError(f'{path} must hold {{"variant": NAME, ...}}; {_COMPRESS_HINT}')
    return data


def available_variants(run: RunDir | str | Path) -> list[str]:
    """Variant folders of a run that hold a ``variant.json``, sorted (``fp32`` not included)."""
    folder = _root(run) / COMPRESSED
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / VARIANT_META).is_file() and not p.name.startswith("."))


def resolve_variant(run: RunDir | str | Path, variant: str | None = None) -> tuple[str, Path]:
    """``(name, folder)`` of the model to load: the named variant, else the selected one, else ``fp32``.

    ``fp32`` is the run's ``model/`` (or ``run`` itself when it is a model folder).

    Raises:
        RunDirError: the run, its trained model or the variant does not exist (the message
            lists the variants there are).
    """
    root = _root(run)
    if variant is None:
        selected = read_selected(root)
        variant = selected["variant"] if selected else FP32
    if variant == FP32:
        model_dir = RunDir(root).model_dir
        model_dir = model_dir if model_dir.is_dir() else root
        if not (model_dir / MODEL_META).is_file():
            raise RunDirError(
                f"{root} has no trained model ({model_dir / MODEL_META} is missing). Run `lmforge train` first."
            )
        return FP32, model_dir
    folder = RunDir(root).variant_dir(variant)
    if not (folder / VARIANT_META).is_file():
        if not root.is_dir():
            raise RunDirError(f"Run directory {root} does not exist.")
        have = available_variants(root)
        raise RunDirError(
            f"{root} has no compressed variant '{variant}'. Available: {', '.join([FP32, *have])}. "
            "Run `lmforge compress RUN` to build variants."
        )
    return variant, folder


def load_predictor(run: RunDir | str | Path, variant: str | None = None) -> Predictor:
    """A predictor for ``run``: the named variant, else the selected one, else the fp32 model.

    Args:
        run: a run directory (or, for ``fp32``, a model folder).
        variant: a folder name under ``compressed/``, or ``fp32`` for the run's own model;
            None picks what ``compressed/selected`` points at (``fp32`` when absent).

    Raises:
        RunDirError: the run or the variant does not exist (the message lists the variants).
    """
    name, folder = resolve_variant(run, variant)
    if name == FP32:  # the trained model is a PyTorch one: its backend says what is missing
        torch_backend = next(b for b in BACKENDS if b.name == "torch")
        predictor: Predictor = importlib.import_module(torch_backend.module).load(folder)
        return predictor
    return load_model_folder(folder)
