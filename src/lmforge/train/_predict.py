"""Load a trained run's model (safetensors only) and predict label probabilities."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._lazy import require
from lmforge.errors import RunDirError
from lmforge.rundir import RunDir

__all__ = ["TorchPredictor", "load_predictor"]


class TorchPredictor:
    """A fine-tuned classifier in PyTorch.

    Texts are sorted by length before batching so each batch pads only to its own longest
    text; results come back in input order.
    """

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], max_length: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C), columns in ``self.labels`` order."""
        torch = require("torch", extra="train", purpose="Prediction")
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]
        batches = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="predict", unit="batch", dynamic_ncols=True)
        self.model.eval()
        with torch.inference_mode():
            for start in batches:
                idx = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx], truncation=True, max_length=self.max_length,
                    padding=True, return_tensors="pt",
                )
                enc = enc.to(self.model.device)
                logits = self.model(**enc).logits.float()  # (B, C)
                out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        proba = self.predict_proba(texts, batch_size=batch_size, progress=progress)
        return [
            {
                "label": self.labels[int(row.argmax())],
                "score": float(row.max()),
                "scores": {label: float(p) for label, p in zip(self.labels, row, strict=True)},
            }
            for row in proba
        ]


def load_predictor(run: RunDir | str | Path) -> TorchPredictor:
    """The trained model of ``run`` (a run directory or its ``model/`` folder), ready to predict."""
    torch = require("torch", extra="train", purpose="Prediction")
    transformers = require("transformers", extra="train", purpose="Prediction")
    from lmforge.catalog import resolve_model
    from lmforge.train._methods import is_adapter_dir
    from lmforge.train._train import MODEL_META

    root = run.root if isinstance(run, RunDir) else Path(run)
    model_dir = root / "model" if (root / "model").is_dir() else root
    meta_path = model_dir / MODEL_META
    if not meta_path.is_file():
        raise RunDirError(f"{root} has no trained model ({meta_path} is missing). Run `lmforge train` first.")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    labels = list(meta["labels"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if is_adapter_dir(model_dir):
        peft = require("peft", extra="train", purpose="Loading a LoRA adapter")
        base = resolve_model(meta["base_model"])
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, use_safetensors=True,
        )
        model = peft.PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    else:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    model.to(torch.float32).eval()
    if torch.cuda.is_available() and os.environ.get("LMFORGE_PREDICT_DEVICE", "auto") != "cpu":
        model.to("cuda")
    return TorchPredictor(model, tokenizer, labels, int(meta.get("max_length", 128)))
