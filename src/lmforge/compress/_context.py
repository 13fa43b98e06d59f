"""What every compressor reads: the run's model and data, loaded once and shared."""

from __future__ import annotations

import copy
import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.catalog import resolve_model
from lmforge.compress._options import CompressOptions
from lmforge.config import DataConfig, EvalConfig
from lmforge.errors import RunDirError
from lmforge.evaluate import load_test_split
from lmforge.metrics import baseline_scores
from lmforge.predict import (
    MODULES_FORMAT,
    MODULES_WEIGHTS,
    FastTokenizer,
    TorchPredictor,
    load_predictor,
    load_torch_model,
)
from lmforge.rundir import ADAPTER_CONFIG, FP32, WEIGHTS, RunDir, read_split, sha256_file

__all__ = ["CompressContext", "weights_fingerprint"]

logger = logging.getLogger(__name__)

_TRAIN_HINT = "Run `lmforge train RUN` first."


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over the weight files of ``model_dir``: a variant built from other weights is stale."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        h.update(path.name.encode())
        h.update(sha256_file(path).encode())
    return h.hexdigest()


class CompressContext:
    """The run's model, tokenizer, splits and fp32 reference predictions, loaded on first use.

    Args:
        run: a trained run directory.
        options: the stage's options.

    Raises:
        RunDirError: the run has no trained model.
    """

    def __init__(self, run: RunDir, options: CompressOptions) -> None:
        self.run = run
        self.options = options
        if not run.root.is_dir():
            raise RunDirError(f"Run directory {run.root} does not exist. Run `lmforge run --out {run.root}` first.")
        meta_path = run.model_meta_path
        if not meta_path.is_file():
            raise RunDirError(f"{run.root} has no trained model ({meta_path} is missing). {_TRAIN_HINT}")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{meta_path} is not valid JSON ({exc}). {_TRAIN_HINT}") from None
        self.labels: list[str] = list(self.meta["labels"])
        self.max_length = int(self.meta.get("max_length", 128))
        self.is_adapter = self.meta.get("format") == "peft-adapter" or (run.model_dir / ADAPTER_CONFIG).is_file()
        # Bottleneck adapters, prefix or prompt: modules beside the base weights, which never merge.
        self.has_modules = self.meta.get("format") == MODULES_FORMAT
        if self.has_modules and not (run.model_dir / MODULES_WEIGHTS).is_file():
            raise RunDirError(f"{run.model_dir} has no {MODULES_WEIGHTS}. {_TRAIN_HINT}")
        if not self.is_adapter and not self.has_modules and not (run.model_dir / WEIGHTS).is_file():
            raise RunDirError(f"{run.model_dir} has no {WEIGHTS}. {_TRAIN_HINT}")
        self.compressed_dir = run.compressed_dir

    # -- the model -------------------------------------------------------------------------
    @functools.cached_property
    def model_config(self) -> dict[str, Any]:
        """config.json of the full model (the base model's for a peft-adapter or modules run)."""
        if self.is_adapter or self.has_modules:
            path = resolve_model(self.meta["base_model"]) / "config.json"
        else:
            path = self.run.model_dir / "config.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def modules_skip_reason(self, what: str) -> str | None:
        """Why ``what`` (pruning, distillation) is not built for a run whose modules stay beside its weights.

        Both rebuild the layers those modules sit in: pruning replaces the output projections an
        adapter wraps (the adapter would be dropped) and shrinks the heads a prefix is shaped for;
        a student has other layers than the ones trained with them.
        """
        if not self.has_modules:
            return None
        return (f"the run was trained with method '{self.meta.get('method')}', whose modules {what} would rebuild "
                "away; it is built for full and LoRA runs (the ONNX and bf16 variants keep the modules)")

    @property
    def model_type(self) -> str:
        return str(self.model_config.get("model_type", "unknown"))

    @functools.cached_property
    def model_fingerprint(self) -> str:
        """sha256 over the weight files of ``model/``: a variant built from other weights is stale."""
        return weights_fingerprint(self.run.model_dir)

    @functools.cached_property
    def fp32(self) -> TorchPredictor:
        """The run's fp32 :class:`~lmforge.predict.TorchPredictor` (a peft adapter merged in)."""
        predictor = load_predictor(self.run, FP32)
        if not isinstance(predictor, TorchPredictor):
            raise RunDirError(f"{self.run.model_dir} is not a PyTorch model; compress starts from one. {_TRAIN_HINT}")
        return predictor

    def torch_model(self, source: str = FP32) -> tuple[Any, Any]:
        """A fresh fp32 copy of a source model (``fp32`` or a torch variant) and its HF tokenizer."""
        if source == FP32:
            return copy.deepcopy(self.fp32.model), self.fp32.tokenizer
        folder = self.variant_dir(source)
        if not (folder / WEIGHTS).is_file():
            raise RunDirError(f"{folder} has no {WEIGHTS} to build on; re-run `lmforge compress --only {source}`.")
        return load_torch_model(folder).float(), self.fp32.tokenizer

    def variant_dir(self, name: str) -> Path:
        return self.compressed_dir / name

    # -- the data --------------------------------------------------------------------------
    @functools.cached_property
    def test(self) -> tuple[list[str], np.ndarray]:
        """Test texts and their label indices."""
        texts, names = load_test_split(self.run)
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted(set(names) - set(index))
        if unknown:
            raise RunDirError(f"{self.run.split_path('test')} has labels the model does not know: {unknown}.")
        return texts, np.array([index[n] for n in names], dtype=np.int64)

    @functools.cached_property
    def train(self) -> tuple[list[str], np.ndarray]:
        """Training texts and their label indices."""
        rows = read_split(self.run, "train")
        index = {label: i for i, label in enumerate(self.labels)}
        rows = [r for r in rows if r["label"] in index]
        return [r["text"] for r in rows], np.array([index[r["label"]] for r in rows], dtype=np.int64)

    @functools.cached_property
    def baseline_floor(self) -> dict[str, Any]:
        """The majority and stratified baselines on the test split, with the run's evaluate.baseline_margin."""
        spec = self.run.read_manifest().get("spec") or {}
        margin = float((spec.get("evaluate") or {}).get("baseline_margin", EvalConfig().baseline_margin))
        seed = int((spec.get("data") or {}).get("seed", DataConfig().seed))
        y_train = self.train[1] if len(self.train[1]) else self.test[1]
        return {"baselines": baseline_scores(y_train, self.test[1], len(self.labels), seed), "margin": margin}

    @functools.cached_property
    def fp32_test_proba(self) -> np.ndarray:
        """fp32 probabilities on the test split: the reference for agreement."""
        return self.fp32.predict_proba(self.test[0], batch_size=self.options.eval_batch_size)

    @functools.cached_property
    def teacher_train_logits(self) -> np.ndarray:
        """fp32 logits on the training split: the teacher of pruning recovery and distillation."""
        from lmforge.compress._finetune import logits_of

        return logits_of(self.fp32.model, self.fp32.tokenizer, self.train[0], self.max_length,
                         self.options.eval_batch_size)

    @functools.cached_property
    def token_lengths(self) -> list[int]:
        """Token count of every test text, truncated to ``max_length``."""
        return FastTokenizer(self.run.model_dir, self.max_length).lengths(self.test[0])

    @property
    def typical_length(self) -> int:
        """p50 of the test split's token lengths: the length latency is measured at."""
        return int(np.median(self.token_lengths))

    def latency_texts(self, batch: int) -> list[str]:
        """``batch`` test texts that pad to exactly :attr:`typical_length` tokens.

        All are at most that long and the longest is exactly that long, so a batch pads to
        the typical length; closer lengths are preferred. Texts repeat if the split is tiny.
        """
        target = self.typical_length
        texts = self.test[0]
        pairs = sorted(
            ((n, t) for n, t in zip(self.token_lengths, texts, strict=True) if n <= target),
            key=lambda p: target - p[0],
        )
        chosen = [t for _, t in pairs[:batch]]
        while len(chosen) < batch:
            chosen.extend(chosen[: batch - len(chosen)])
        return chosen
