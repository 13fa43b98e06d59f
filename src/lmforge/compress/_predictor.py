"""The :class:`Predictor` interface, its backends, and :func:`load_predictor` for a run or a variant.

A variant folder is loaded by the first backend that recognizes it ("first match wins"):
``model.onnx`` -> onnxruntime (tokenizers + ORT only, no torch in the process), then
``model.safetensors`` -> torch. Each backend lives in its own module, imported only when it
is picked, so serving an ONNX variant never imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmforge.errors import RunDirError
from lmforge.rundir import RunDir

__all__ = [
    "BACKENDS",
    "COMPRESSED",
    "SELECTED",
    "Predictor",
    "batched_proba",
    "load_predictor",
    "load_variant",
    "read_selected",
    "to_predictions",
]

COMPRESSED = "compressed"
SELECTED = "selected"
MODEL_META = "lmforge_model.json"


@runtime_checkable
class Predictor(Protocol):
    """A text classifier ready to predict: what ``lmforge predict``, evaluation and serving use."""

    labels: list[str]
    """Class names, in the column order of :meth:`predict_proba`."""
    max_length: int
    """Longest token sequence the model sees; longer texts are truncated."""

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C); rows sum to 1, columns in ``labels`` order."""
        ...

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, in float32."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def batched_proba(texts: Sequence[str], n_labels: int, batch_size: int, progress: bool,
                  run_batch: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Apply ``run_batch`` (texts -> (B, C) probabilities) over length-sorted batches; input order out.

    Sorting by length keeps each batch's padding small; results go back to input order.
    """
    texts = list(texts)
    out = np.zeros((len(texts), n_labels), dtype=np.float32)
    if not texts:
        return out
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    starts: Any = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", unit="batch", dynamic_ncols=True)
    for start in starts:
        idx = order[start : start + batch_size]
        out[idx] = run_batch([texts[i] for i in idx])
    return out


def to_predictions(labels: list[str], proba: np.ndarray) -> list[dict[str, Any]]:
    """``predict`` output from a (N, C) probability matrix."""
    return [
        {
            "label": labels[int(row.argmax())],
            "score": float(row.max()),
            "scores": {label: float(p) for label, p in zip(labels, row, strict=True)},
        }
        for row in proba
    ]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); re-run `lmforge compress`.") from None


def read_meta(folder: Path) -> dict[str, Any]:
    """A variant's ``lmforge_model.json`` (labels, max_length, format)."""
    path = folder / MODEL_META
    if not path.is_file():
        raise RunDirError(f"{folder} has no {MODEL_META}; re-run `lmforge compress` to rebuild the variant.")
    meta = _read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise RunDirError(f"{path} has no label list; re-run `lmforge compress`.")
    return meta


# (name, recognizes a folder, module with ``load(folder) -> Predictor``); first match wins.
BACKENDS: tuple[tuple[str, Callable[[Path], bool], str], ...] = (
    ("onnxruntime", lambda d: (d / "model.onnx").is_file(), "lmforge.compress._onnx_backend"),
    ("torch", lambda d: (d / "model.safetensors").is_file(), "lmforge.compress._torch_backend"),
)


def load_variant(folder: str | Path) -> Predictor:
    """The predictor of one variant folder, by the first backend that recognizes it."""
    import importlib

    folder = Path(folder)
    for _name, recognizes, module in BACKENDS:
        if recognizes(folder):
            return importlib.import_module(module).load(folder)  # type: ignore[no-any-return]
    raise RunDirError(
        f"{folder} holds no model file this version can load (model.onnx or model.safetensors); "
        "re-run `lmforge compress`."
    )


def _root(run: RunDir | str | Path) -> Path:
    return run.root if isinstance(run, RunDir) else Path(run)


def read_selected(run: RunDir | str | Path) -> dict[str, Any] | None:
    """The ``compressed/selected`` pointer (``{"variant", "path", "reason", ...}``), or None."""
    path = _root(run) / COMPRESSED / SELECTED
    if not path.is_file():
        return None
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("variant"), str):
        raise RunDirError(f'{path} must hold {{"variant": NAME, ...}}; re-run `lmforge compress`.')
    return data


def available_variants(run: RunDir | str | Path) -> list[str]:
    """Variant folders of a run that hold a ``variant.json``, sorted."""
    folder = _root(run) / COMPRESSED
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "variant.json").is_file() and not p.name.startswith("."))


def load_predictor(run: RunDir | str | Path, variant: str | None = None) -> Predictor:
    """A predictor for ``run``: the named variant, else the selected one, else the fp32 model.

    Args:
        run: a run directory.
        variant: a folder name under ``compressed/``, or ``fp32`` for the run's own model;
            None picks what ``compressed/selected`` points at (``fp32`` when absent).

    Raises:
        RunDirError: the run or the variant does not exist (the message lists the variants).
    """
    from lmforge.compress._registry import FP32

    root = _root(run)
    if variant is None:
        selected = read_selected(root)
        variant = selected["variant"] if selected else FP32
    if variant == FP32:
        from lmforge.train import load_predictor as load_fp32

        return load_fp32(root)  # type: ignore[return-value]
    folder = root / COMPRESSED / variant
    if not (folder / "variant.json").is_file():
        have = available_variants(root)
        if not root.is_dir():
            raise RunDirError(f"Run directory {root} does not exist.")
        raise RunDirError(
            f"{root} has no compressed variant '{variant}'. Available: {', '.join([FP32, *have])}. "
            "Run `lmforge compress RUN` to build variants."
        )
    return load_variant(folder)
