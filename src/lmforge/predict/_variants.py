"""Which model folder of a run to load, and which backend loads it ("first match wins").

A run answers with its selected variant (``compressed/selected``), a named one
(``compressed/<name>/``) or ``fp32``, the run's own ``model/``. A variant name is one plain
folder name (no separator, no ``..``, not hidden) and the folder must be a real one of the
run, never a symlink: verification hashes nothing a link points at. A folder is loaded by the
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

from lmforge.errors import ConfigError, RunDirError
from lmforge.guard import RunVerification
from lmforge.predict._meta import CAUSAL_LM
from lmforge.predict._modules_io import MODULES_WEIGHTS
from lmforge.predict._protocol import Generator, Predictor
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
    "load_generator",
    "load_model_folder",
    "load_predictor",
    "read_selected",
    "resolve_variant",
    "run_kind",
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
    Backend("torch", lambda d: (d / WEIGHTS).is_file() or is_adapter_dir(d) or (d / MODULES_WEIGHTS).is_file(),
            "lmforge.predict._torch"),
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
    """Variant folders of a run that hold a ``variant.json``, sorted (``fp32`` not included).

    Hidden folders (a stage's temporary ones) and symlinks are no variants.
    """
    folder = _root(run) / COMPRESSED
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(
        p.name for p in folder.iterdir()
        if not p.name.startswith(".") and not p.is_symlink() and _real_file(p / VARIANT_META)
    )


def _real_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _name_problem(variant: object) -> str | None:
    """Why ``variant`` cannot name a folder of ``compressed/``, or None."""
    if not isinstance(variant, str):
        return "it is not a string"
    if not variant:
        return "it is empty"
    if "/" in variant or "\\" in variant or "\0" in variant:
        return "a variant is one folder name, without '/' or '\\'"
    if ".." in variant:
        return "it may not contain '..'"
    if variant.startswith("."):
        return "hidden folders (a stage's temporary ones) are no variants"
    return None


def _symlink_problem(root: Path, folder: Path) -> str | None:
    for path in (folder.parent, folder) if folder.parent != root else (folder,):
        if path.is_symlink():
            return (f"{path} is a symlink; lmforge loads only real folders of the run (what a link points at is "
                    "neither hashed nor signed). Copy the folder into the run, then compress or sign it again.")
    return None


def resolve_variant(run: RunDir | str | Path, variant: str | None = None) -> tuple[str, Path]:
    """``(name, folder)`` of the model to load: the named variant, else the selected one, else ``fp32``.

    ``fp32`` is the run's ``model/`` (or ``run`` itself when it is a model folder). Every caller
    that takes a variant name from a user (``lmforge predict --variant``, the registry, a served
    source) gets its checks here.

    Raises:
        ConfigError: ``variant`` is no plain folder name (a path separator, ``..``, hidden).
        RunDirError: the run, its trained model or the variant does not exist, or is a symlink
            (the message lists the variants there are); the selected pointer names no variant.
    """
    root = _root(run)
    if variant is None:
        selected = read_selected(root)
        variant = selected["variant"] if selected else FP32
        if (problem := _name_problem(variant)) is not None:
            raise RunDirError(f"{root / COMPRESSED / SELECTED} points at {str(variant)[:80]!r}, which is no "
                              f"variant ({problem}); {_COMPRESS_HINT}")
    elif (problem := _name_problem(variant)) is not None:
        raise ConfigError(
            f"Variant name {str(variant)[:80]!r} is not valid: {problem}. Available: "
            f"{', '.join([FP32, *available_variants(root)])}."
        )
    if variant == FP32:
        model_dir = RunDir(root).model_dir
        if (problem := _symlink_problem(root, model_dir)) is not None:
            raise RunDirError(problem)
        model_dir = model_dir if model_dir.is_dir() else root
        if not _real_file(model_dir / MODEL_META):
            raise RunDirError(
                f"{root} has no trained model ({model_dir / MODEL_META} is missing). Run `lmforge train` first."
            )
        return FP32, model_dir
    folder = RunDir(root).variant_dir(variant)
    if (problem := _symlink_problem(root, folder)) is not None:
        raise RunDirError(problem)
    if not folder.is_dir() or not _real_file(folder / VARIANT_META):
        if not root.is_dir():
            raise RunDirError(f"Run directory {root} does not exist.")
        have = available_variants(root)
        raise RunDirError(
            f"{root} has no compressed variant '{variant}'. Available: {', '.join([FP32, *have])}. "
            "Run `lmforge compress RUN` to build variants."
        )
    return variant, folder


def load_predictor(
    run: RunDir | str | Path, variant: str | None = None, *, verified: RunVerification | None = None
) -> Predictor:
    """A predictor for ``run``: the named variant, else the selected one, else the fp32 model.

    Loading decides no trust: the caller verifies the run first (``lmforge.guard.trust_run``)
    and passes what that returned as ``verified``. The backend then loads the model, copies its
    weights into memory of its own, and ``verified.check_unchanged()`` confirms that no file
    changed since it was hashed: what runs is byte for byte what was verified, and later
    writes to the files cannot reach it (see :mod:`lmforge.guard._integrity`).

    Args:
        run: a run directory (or, for ``fp32``, a model folder).
        variant: a folder name under ``compressed/``, or ``fp32`` for the run's own model;
            None picks what ``compressed/selected`` points at (``fp32`` when absent).
        verified: the verification of this run that the loaded files must still match.

    Raises:
        ConfigError: a malformed variant name, or ``verified`` is of another run.
        RunDirError: the run or the variant does not exist (the message lists the variants).
        IntegrityError: a file changed between verification and loading.
    """
    if verified is not None and Path(verified.run).resolve() != Path(_root(run)).resolve():
        raise ConfigError(f"The verification passed is of {verified.run}, not of {_root(run)}.")
    name, folder = resolve_variant(run, variant)
    if name == FP32:  # the trained model is a PyTorch one: its backend says what is missing
        torch_backend = next(b for b in BACKENDS if b.name == "torch")
        predictor: Predictor = importlib.import_module(torch_backend.module).load(folder)
    else:
        predictor = load_model_folder(folder)
    if verified is not None:
        verified.check_unchanged()
    return predictor


def _generator_folder(root: Path) -> Path:
    """The folder a generator loads: ``root/model/`` of a run, else ``root`` itself."""
    model_dir = RunDir(root).model_dir
    if (problem := _symlink_problem(root, model_dir)) is not None:
        raise RunDirError(problem)
    if model_dir.is_dir() and _real_file(model_dir / MODEL_META):
        return model_dir
    if _real_file(root / MODEL_META) or (root / "config.json").is_file():
        return root
    if not root.is_dir():
        raise RunDirError(f"Run directory {root} does not exist.")
    raise RunDirError(f"{root} has no trained model ({model_dir / MODEL_META} is missing). Run `lmforge train` first.")


def run_kind(run: RunDir | str | Path) -> str:
    """``causal-lm`` when a run's ``model/`` (or the model folder given) holds a generative model,
    else ``encoder`` (a classifier; also when there is no trained model yet: the classifier path
    says what is missing)."""
    root = _root(run)
    for folder in (RunDir(root).model_dir, root):
        path = folder / MODEL_META
        if _real_file(path):
            meta = read_json(path, hint="re-run `lmforge train`.")
            return CAUSAL_LM if isinstance(meta, dict) and meta.get("kind") == CAUSAL_LM else "encoder"
    return "encoder"


def load_generator(run: RunDir | str | Path, variant: str | None = None, *,
                   verified: RunVerification | None = None) -> Generator:
    """A :class:`~lmforge.predict.Generator` for a generative run, or for a plain causal LM folder.

    Like :func:`load_predictor`, loading decides no trust: the caller verifies the run
    (``lmforge.guard.trust_run``) and passes the result as ``verified``, checked once the
    weights are in memory. A plain ``save_pretrained`` folder (a catalog model's path, any local
    causal LM, a variant folder) loads as it is, without a system prompt unless its
    ``lmforge_model.json`` has one: the "base model without fine-tuning" an evaluation compares against.

    Args:
        run: a run directory, its ``model/`` folder, or a causal LM folder.
        variant: of a run directory: a folder name under ``compressed/`` or ``fp32`` (its
            ``model/``); None picks what ``compressed/selected`` points at (``fp32`` when absent).
        verified: the verification of this run that the loaded files must still match.

    Raises:
        ConfigError: ``verified`` is of another run.
        RunDirError: no causal LM there, or its ``lmforge_model.json`` breaks the contract.
        IntegrityError: an adapter's base model changed since training, or a file changed
            between verification and loading.
    """
    root = _root(run)
    if verified is not None and Path(verified.run).resolve() != root.resolve():
        raise ConfigError(f"The verification passed is of {verified.run}, not of {root}.")
    if variant is None and read_selected(root) is None:
        variant = FP32
    if variant is None or variant != FP32:
        folder = resolve_variant(root, variant)[1]
    else:
        folder = _generator_folder(root)
    generator: Generator = importlib.import_module("lmforge.predict._torch_generator").load(folder)
    if verified is not None:
        verified.check_unchanged()
    return generator
