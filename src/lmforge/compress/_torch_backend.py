"""Torch backend: a variant saved as safetensors + config + tokenizer (bf16, pruned, distilled, merged).

Weights load through safetensors only (no pickle). A pruned variant carries ``pruning.json``
with its per-layer sizes; the model is built from the config, shrunk to those sizes, then
filled from the safetensors with every key and shape checked (``strict=True``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge._lazy import require
from lmforge.compress._predictor import read_meta
from lmforge.errors import RunDirError

__all__ = ["load", "load_model", "save_model"]

PRUNING = "pruning.json"
WEIGHTS = "model.safetensors"


def load_model(folder: str | Path) -> Any:
    """The ``AutoModelForSequenceClassification`` saved in a variant folder, in eval mode."""
    torch = require("torch", extra="train", purpose="Loading a PyTorch variant")
    transformers = require("transformers", extra="train", purpose="Loading a PyTorch variant")
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Loading a PyTorch variant")
    folder = Path(folder)
    meta = read_meta(folder)
    dtype = torch.bfloat16 if meta.get("dtype") == "bfloat16" else torch.float32
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = transformers.AutoConfig.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    if (folder / PRUNING).is_file():
        from lmforge.compress._prune_ops import apply_shapes

        apply_shapes(model, json.loads((folder / PRUNING).read_text(encoding="utf-8")))
    state = safetensors_torch.load_file(str(folder / WEIGHTS))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RunDirError(f"{folder / WEIGHTS} does not match its config ({exc}); re-run `lmforge compress`.") from None
    return model.to(dtype).eval()


def save_model(model: Any, out: Path) -> None:
    """Weights as safetensors (no pickle) plus config.json."""
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Saving a PyTorch variant")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_torch.save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    model.config.save_pretrained(out)


def load(folder: Path) -> Any:
    """A :class:`lmforge.train.TorchPredictor` over the variant (its dtype kept: bf16 stays bf16)."""
    transformers = require("transformers", extra="train", purpose="Loading a PyTorch variant")
    from lmforge.train._predict import TorchPredictor

    meta = read_meta(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    predictor = TorchPredictor(load_model(folder), tokenizer, list(meta["labels"]), int(meta.get("max_length", 128)))
    predictor.backend = "torch"  # type: ignore[attr-defined]
    return predictor
