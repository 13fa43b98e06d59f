"""The train stage on a real (packaged) model, a few steps on a hand-written prepared split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file

from lmforge.config import spec_from_dict
from lmforge.errors import RunDirError
from lmforge.predict import load_predictor
from lmforge.rundir import RunDir
from lmforge.train import train

pytestmark = pytest.mark.slow

POS = ["great flight, thank you", "love the crew, amazing service", "best airline ever, thanks",
       "smooth landing and friendly staff", "awesome upgrade, thank you so much"]
NEG = ["lost my bag again, terrible", "delayed three hours, worst airline", "rude agent and no refund",
       "cancelled flight, awful service", "stuck on the tarmac for hours, horrible"]


def _prepared(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.data_dir.mkdir(parents=True)
    rows = [{"text": t, "label": "positive"} for t in POS] + [{"text": t, "label": "negative"} for t in NEG]
    for split, part in (("train", rows * 4), ("val", rows[::2]), ("test", rows[1::2])):
        run.split_path(split).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    run.labels_path.write_text(json.dumps({"labels": ["negative", "positive"]}), encoding="utf-8")
    return run


def capture_saved_model(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Keep the in-memory model and tokenizer that ``train`` saves to ``model/`` (the original of a reload)."""
    import inspect

    import lmforge.train._stage as stage

    saved: dict[str, Any] = {}
    real = stage._save_model

    def keep(*args: Any, **kwargs: Any) -> None:
        saved.update(inspect.signature(real).bind(*args, **kwargs).arguments)
        real(*args, **kwargs)

    monkeypatch.setattr(stage, "_save_model", keep)
    return saved


def in_memory_proba(saved: dict[str, Any], texts: list[str], max_length: int) -> np.ndarray:
    """Class probabilities of the trained model as it was in memory, before it was written and reloaded."""
    import torch

    model = saved["model"].eval()
    enc = saved["tokenizer"](texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**enc).logits.float(), dim=-1).numpy()


def test_full_fine_tuning_learns_and_saves_safetensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _prepared(tmp_path)
    # fp32: under bf16 autocast (precision auto on an AMX or AVX512-BF16 CPU) the in-memory model's
    # forward stays wrapped in autocast by accelerate, so it would not compute what fp32 inference does.
    spec = spec_from_dict({"model": {"max_length": 32}, "train": {
        "max_steps": 12, "batch_size": 8, "eval_steps": 6, "learning_rate": 2e-4, "warmup_ratio": 0.0,
        "precision": "fp32"}})
    saved = capture_saved_model(monkeypatch)
    summary = train(spec, run, progress=False)
    assert summary["steps"] == 12
    # Everything trains but the 30522 x 384 word-embedding matrix (train.freeze_embeddings).
    assert summary["total_parameters"] - summary["trainable_parameters"] == 30522 * 384
    files = {p.name for p in run.model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "labels.json", "lmforge_model.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    assert not run.checkpoints_dir.exists()  # transient: removed once the model is saved
    log = [json.loads(line) for line in (run.logs_dir / "train.log").read_text(encoding="utf-8").splitlines()]
    assert any("eval_macro_f1" in r for r in log) and any("loss" in r for r in log)
    assert any(p.name.startswith("events.out.tfevents") for p in (run.logs_dir / "tensorboard").iterdir())
    assert run.read_manifest()["train"]["steps"] == 12

    predictor = load_predictor(run)
    proba = predictor.predict_proba(POS + NEG, batch_size=10)
    # the reloaded model computes what the trained one did in memory
    np.testing.assert_allclose(proba, in_memory_proba(saved, POS + NEG, 32), rtol=0, atol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    predicted = proba.argmax(axis=1)
    assert (predicted[:5] == 1).mean() + (predicted[5:] == 0).mean() >= 1.6  # learned the easy task


def test_lora_fgm_sgd_saves_an_adapter_that_loads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _prepared(tmp_path)
    saved = capture_saved_model(monkeypatch)
    spec = spec_from_dict({"model": {"max_length": 32}, "train": {
        "method": "lora", "max_steps": 4, "batch_size": 8, "optimizer": "sgd", "scheduler": "cosine",
        "adversarial": "fgm", "dropout": 0.0, "learning_rate": 1e-2, "lora": {"r": 4, "alpha": 8},
        "precision": "fp32"}})  # fp32: see the test above
    summary = train(spec, run, progress=False)
    assert summary["trainable_parameters"] < 0.05 * summary["total_parameters"]
    assert (run.model_dir / "adapter_config.json").is_file()
    adapter = load_file(run.model_dir / "adapter_model.safetensors")
    assert any("lora_A" in k for k in adapter) and any("classifier" in k for k in adapter)
    assert sum(t.numel() for t in adapter.values()) < 1_000_000
    meta = json.loads((run.model_dir / "lmforge_model.json").read_text(encoding="utf-8"))
    assert meta["base_model"] == "minilm-l6" and meta["format"] == "peft-adapter"
    texts = ["great flight", "lost my bag again, terrible", "rude agent"]
    proba = load_predictor(run).predict_proba(texts, batch_size=3)
    # the adapter, reloaded and merged into its base, computes what the trained adapter model did in memory
    np.testing.assert_allclose(proba, in_memory_proba(saved, texts, 32), rtol=0, atol=1e-5)


def test_full_without_frozen_embeddings_trains_every_weight(tmp_path: Path) -> None:
    run = _prepared(tmp_path)
    spec = spec_from_dict({"model": {"max_length": 32},
                           "train": {"max_steps": 2, "batch_size": 8, "freeze_embeddings": False}})
    summary = train(spec, run, progress=False)
    assert summary["trainable_parameters"] == summary["total_parameters"] > 20_000_000


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    run = _prepared(tmp_path)
    with pytest.raises(RunDirError, match="Nothing to resume"):
        train(spec_from_dict({"train": {"max_steps": 2}}), run, resume=True, progress=False)


def test_predictor_needs_a_trained_model(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="Run `lmforge train` first"):
        load_predictor(_prepared(tmp_path))
