"""model.extend_vocab on a tiny BERT built in the test: new rows train, frozen old rows do not,
and the extended tokenizer gives the same ids through save -> predict -> ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tests._tiny_bert import SPECIALS, WORDS, ZH_NEG, ZH_POS, build_tiny_bert, write_zh_prepared

from lmforge.config import spec_from_dict
from lmforge.errors import DataError
from lmforge.predict import FastTokenizer, load_predictor
from lmforge.rundir import RunDir
from lmforge.train import train

BASE_VOCAB = len(SPECIALS) + len(WORDS)
SAMPLE = ["这家餐厅的菜很好吃", "服务差，等了很久", "the food is good 菜"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def _base_embeddings(tiny: Path) -> torch.Tensor:
    return load_file(str(tiny / "model.safetensors"))["embeddings.word_embeddings.weight"]


def _train(root: Path, tiny: Path, method: str, model: dict | None = None, **train_cfg: object) -> RunDir:
    write_zh_prepared(root)
    # Weight decay is high on purpose: decoupled decay would shrink frozen rows if they were not kept out of it.
    cfg: dict = {"max_steps": 6, "batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "method": method,
                 "early_stopping_patience": None, "weight_decay": 0.1, **train_cfg}
    if method == "lora":
        cfg["lora"] = {"r": 2, "alpha": 4}
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": 32, **(model or {})}, "train": cfg})
    train(spec, RunDir(root), progress=False)
    return RunDir(root)


@pytest.fixture(scope="module")
def full_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    return _train(tmp_path_factory.mktemp("full") / "run", tiny, "full")


@pytest.fixture(scope="module")
def lora_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    return _train(tmp_path_factory.mktemp("lora") / "run", tiny, "lora")


def _added(run: RunDir) -> int:
    return json.loads((run.model_dir / "lmforge_model.json").read_text(encoding="utf-8"))["vocab"]["added"]


def test_auto_extends_and_records_the_check(full_run: RunDir) -> None:
    readable = full_run.read_manifest()["train"]["readability"]
    assert readable["decision"] == "extend"
    chars = {c for t in ZH_POS + ZH_NEG for c in t if c not in WORDS}
    # Every unknown character of the training split was seen 3+ times (3 copies), so all are added.
    assert readable["extension"]["added"] == len(chars) == _added(full_run)
    assert readable["extension"]["base_vocab_size"] == BASE_VOCAB
    assert readable["before"]["unknown_rate"] > 0.8
    assert readable["after"]["unknown_rate"] == 0.0


def test_full_new_rows_train_and_frozen_old_rows_stay_bit_exact(full_run: RunDir, tiny: Path) -> None:
    base = _base_embeddings(tiny)
    trained = load_file(str(full_run.model_dir / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    assert trained.shape == (BASE_VOCAB + _added(full_run), base.shape[1])
    assert torch.equal(trained[:BASE_VOCAB], base)  # frozen (train.freeze_embeddings defaults to true)
    # Rebuild the initial new rows (seed 42, as train.seed) and check each one moved.
    noise = torch.randn(_added(full_run), base.shape[1], generator=torch.Generator().manual_seed(42))
    initial = base.mean(dim=0) + base.std(dim=0) * noise
    moved = (trained[BASE_VOCAB:] - initial).abs().amax(dim=1)
    assert bool((moved > 1e-4).all()), moved


def test_full_without_freezing_trains_old_rows_too(tiny: Path, tmp_path: Path) -> None:
    run = _train(tmp_path / "run", tiny, "full", freeze_embeddings=False)
    trained = load_file(str(run.model_dir / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    base = _base_embeddings(tiny)
    used = [BASE_VOCAB - len(WORDS) + WORDS.index(w) for w in ("的", "好")]  # known rows the texts use
    assert not torch.equal(trained[used], base[used])


def test_lora_new_rows_train_and_old_rows_stay(lora_run: RunDir, tiny: Path) -> None:
    adapter = load_file(str(lora_run.model_dir / "adapter_model.safetensors"))
    assert not any("word_embeddings.weight" in k and "trainable_tokens" not in k for k in adapter), list(adapter)
    model = load_predictor(lora_run, "fp32").model  # base resized, adapter merged
    merged = model.get_input_embeddings().weight.detach()
    base = _base_embeddings(tiny)
    assert merged.shape[0] == BASE_VOCAB + _added(lora_run)
    assert torch.equal(merged[:BASE_VOCAB], base)
    noise = torch.randn(_added(lora_run), base.shape[1], generator=torch.Generator().manual_seed(42))
    initial = base.mean(dim=0) + base.std(dim=0) * noise
    assert bool(((merged[BASE_VOCAB:] - initial).abs().amax(dim=1) > 1e-4).all())


def test_extended_tokenizer_round_trips_through_predict_and_onnx(full_run: RunDir, tmp_path: Path) -> None:
    import transformers
    from tests._runs import copy_run, fast_options

    from lmforge.compress import compress

    saved = transformers.AutoTokenizer.from_pretrained(full_run.model_dir)
    want = saved(SAMPLE)["input_ids"]
    assert all(i != saved.unk_token_id for row in want[:2] for i in row)  # the Chinese texts are readable now
    assert max(i for row in want for i in row) >= BASE_VOCAB  # and use added tokens
    torch_pred = load_predictor(full_run, "fp32")
    assert torch_pred.tokenizer(SAMPLE)["input_ids"] == want
    assert FastTokenizer(full_run.model_dir, 32)(SAMPLE)["input_ids"].tolist() == \
        [row + [0] * (max(map(len, want)) - len(row)) for row in want]

    run = copy_run(full_run.root, tmp_path / "c")
    compress(run, fast_options(only=("onnx-fp32",)))
    variant = run.compressed_dir / "onnx-fp32"
    onnx_ids = FastTokenizer(variant, 32)(SAMPLE)["input_ids"].tolist()
    assert [[i for i in row if i != 0] for row in onnx_ids] == want
    onnx_pred = load_predictor(run, "onnx-fp32")
    np.testing.assert_allclose(onnx_pred.predict_proba(SAMPLE), torch_pred.predict_proba(SAMPLE), atol=1e-4)


def test_extend_vocab_false_stops_with_the_fix(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot read \d+% of the tokens of this data \(script: Han\)"):
        _train(tmp_path / "run", tiny, "full", model={"extend_vocab": False})
    assert not (tmp_path / "run" / "model").exists()
