"""train_contrastive: in-batch-negative fine-tuning of an encoder, full and LoRA, read back by TextEmbedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests._recommend import EXTRA, GENRES, build_tiny_encoder

from lmforge.config import spec_from_dict
from lmforge.errors import ConfigError
from lmforge.predict import TextEmbedder
from lmforge.train import train_contrastive

# a query word -> its document word: the encoder must learn to put each pair together
PAIRS = list(zip(GENRES[:5], EXTRA, strict=True))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


def _cfg(method: str, steps: int):
    return spec_from_dict({"train": {"method": method, "max_steps": steps, "batch_size": 5, "learning_rate": 1e-2,
                                     "warmup_ratio": 0.0, "track": [], "threads": 1,
                                     "freeze_embeddings": False}}).train


def _pair_accuracy(folder: Path) -> float:
    emb = TextEmbedder(folder, max_length=16)
    q = emb.encode([a for a, _ in PAIRS])
    d = emb.encode([b for _, b in PAIRS])
    return float(np.mean((q @ d.T).argmax(axis=1) == np.arange(len(PAIRS))))


def test_full_fine_tuning_learns_the_pairs(encoder: Path, tmp_path: Path) -> None:
    queries, docs = [a for a, _ in PAIRS] * 4, [b for _, b in PAIRS] * 4
    assert _pair_accuracy(encoder) < 1.0  # the random encoder does not know them
    summary = train_contrastive(encoder, queries, docs, tmp_path / "full", _cfg("full", 20), max_length=16,
                                temperature=0.1)
    assert summary["steps"] == 20 and summary["method"] == "full" and summary["pairs"] == 20
    assert summary["loss_last"] < 0.25 * summary["loss_first"]
    assert _pair_accuracy(tmp_path / "full") == 1.0
    assert (tmp_path / "full" / "model.safetensors").is_file()


def test_lora_trains_fewer_parameters_and_saves_a_merged_encoder(encoder: Path, tmp_path: Path) -> None:
    queries, docs = [a for a, _ in PAIRS] * 2, [b for _, b in PAIRS] * 2
    lora = train_contrastive(encoder, queries, docs, tmp_path / "lora", _cfg("lora", 3), max_length=16)
    full = train_contrastive(encoder, queries, docs, tmp_path / "full", _cfg("full", 1), max_length=16)
    assert 0 < lora["trainable_params"] < full["trainable_params"]
    assert not (tmp_path / "lora" / "adapter_config.json").exists()  # merged: a plain encoder folder
    before = TextEmbedder(encoder).encode(["action robot"])
    after = TextEmbedder(tmp_path / "lora").encode(["action robot"])
    assert after.shape == before.shape == (1, 16)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, rtol=1e-5)


def test_other_methods_and_too_few_pairs_are_refused(encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.method 'ia3' cannot train the text model; use one of full, lora"):
        train_contrastive(encoder, ["a", "b"], ["c", "d"], tmp_path, _cfg("ia3", 1))
    with pytest.raises(ConfigError, match=r"at least 2 \(query, document\) pairs, got 1 queries"):
        train_contrastive(encoder, ["a"], ["c"], tmp_path, _cfg("full", 1))
