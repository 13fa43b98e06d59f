"""The contract every registered fine-tuning method keeps, on a tiny BERT built in the test.

For each name in ``lmforge.train.METHODS``: a few real training steps through the train stage ->
``model/`` saved -> loaded back through ``lmforge.predict`` with the same logits as the model
in memory at the end of training (<= 1e-5) -> ``compress`` (a peft adapter is merged, and the
merged variant gives those logits too) -> ``predict`` on the selected variant, scoring what
compress measured for it; and the stage's trainable-parameter count is the method's formula in
``_method_formulas.py``, counted from the model's shapes. A method without a formula fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from tests._runs import fast_options
from tests._tiny_bert import build_tiny_bert, write_en_prepared
from tests.unit.train._method_formulas import FORMULAS

from lmforge.compress import compress
from lmforge.config import spec_from_dict
from lmforge.predict import TorchPredictor, load_predictor
from lmforge.rundir import ADAPTER_CONFIG, BASELINE, FP32, VARIANT_META, RunDir, read_split
from lmforge.train import METHODS, train

# Small settings where a method's defaults would dwarf the tiny model; methods not named use theirs.
SETTINGS: dict[str, dict[str, Any]] = {
    "lora": {"lora": {"r": 2, "alpha": 4}},
    "adalora": {"adalora": {"init_r": 4, "target_r": 2, "delta_t": 1}},
}
MAX_LENGTH = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


class _Capture:
    """The registered method itself, which also keeps the model it is asked to save: the model in
    memory at the end of training (after the Trainer loaded the best checkpoint back)."""

    def __init__(self, method: Any, seen: dict[str, Any]) -> None:
        self._method = method
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._method, name)

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        self._seen["model"] = model
        self._method.save(model, out_dir)


def _logits(model: torch.nn.Module, tokenizer: Any, texts: list[str]) -> np.ndarray:
    enc = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return np.asarray(model(**enc).logits.float().numpy())


def _base_classifier(tiny: Path) -> torch.nn.Module:
    """The model the stage builds before the method wraps it (the same head size)."""
    return transformers.AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_saves_reloads_compresses_and_predicts(
    name: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert name in FORMULAS, f"method {name!r} has no trainable-parameter formula in _method_formulas.py"
    seen: dict[str, Any] = {}
    factory = METHODS[name]
    monkeypatch.setitem(METHODS, name, lambda: _Capture(factory(), seen))
    run = RunDir(write_en_prepared(tmp_path / "run"))
    cfg = {"max_steps": 3, "batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "method": name,
           "early_stopping_patience": None, "threads": 1, **SETTINGS.get(name, {}),
           # fp32: under bf16 autocast accelerate leaves the trained model's forward autocast too.
           "precision": "fp32"}
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": MAX_LENGTH}, "train": cfg})
    summary = train(spec, run, progress=False)

    assert summary["method"] == name and summary["steps"] == 3
    assert json.loads(run.model_meta_path.read_text(encoding="utf-8"))["method"] == name
    assert summary["trainable_parameters"] == FORMULAS[name](_base_classifier(tiny), spec.train)

    texts = [r["text"] for r in read_split(run, "test")]
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.model_dir)
    trained = _logits(seen["model"], tokenizer, texts)
    assert np.ptp(trained[:, 1] - trained[:, 0]) > 0  # the texts get different scores: a real comparison
    loaded = load_predictor(run, FP32)
    assert isinstance(loaded, TorchPredictor)
    np.testing.assert_allclose(_logits(loaded.model, tokenizer, texts), trained, rtol=0, atol=1e-5)
    proba = torch.softmax(torch.from_numpy(trained), dim=-1).numpy()
    np.testing.assert_allclose(loaded.predict_proba(texts, batch_size=4), proba, rtol=0, atol=1e-5)

    result = compress(run, fast_options(only=("merged", "onnx-int8-dynamic")))
    if (run.model_dir / ADAPTER_CONFIG).is_file():  # a peft adapter: merged into plain weights
        assert result["built"] == ["merged", "onnx-int8-dynamic"]
        merged = load_predictor(run, "merged")
        assert isinstance(merged, TorchPredictor)
        assert not any("lora_" in n or "ia3_" in n for n, _ in merged.model.named_parameters())
        np.testing.assert_allclose(_logits(merged.model, tokenizer, texts), trained, rtol=0, atol=1e-5)
    else:
        assert "merged" in result["skipped"] and "onnx-int8-dynamic" in result["built"]

    chosen = result["selected"]
    record_path = run.compressed_dir / (BASELINE if chosen == FP32 else f"{chosen}/{VARIANT_META}")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    predictions = load_predictor(run).predict([r["text"] for r in read_split(run, "test")])
    labels = [r["label"] for r in read_split(run, "test")]
    accuracy = float(np.mean([p["label"] == y for p, y in zip(predictions, labels, strict=True)]))
    assert round(accuracy, 6) == record["accuracy"]
