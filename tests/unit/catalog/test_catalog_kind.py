"""``model_kind``: what a folder's config.json says the model is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.catalog import model_kind
from lmforge.errors import ConfigError


def folder(tmp_path: Path, config: object) -> Path:
    tmp_path.joinpath("config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "causal-lm"),
        ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, "causal-lm"),
        ({"model_type": "qwen2"}, "causal-lm"),
        ({"architectures": ["BertModel"], "model_type": "bert"}, "encoder"),
        ({"architectures": ["BertForMaskedLM"], "model_type": "bert"}, "encoder"),
        ({"architectures": ["LlamaForSequenceClassification"], "model_type": "llama"}, "encoder"),
        ({"model_type": "bert"}, "encoder"),
    ],
    ids=["llama", "gpt2", "model-type-only", "bert", "masked-lm", "llama-classifier", "bert-type-only"],
)
def test_kind_from_config(tmp_path: Path, config: dict[str, object], kind: str) -> None:
    assert model_kind(folder(tmp_path, config)) == kind


def test_the_tiny_lm_and_the_packaged_encoder(tmp_path: Path) -> None:
    from tests._tiny_lm import build_tiny_lm

    from lmforge.catalog import resolve_model

    assert model_kind(build_tiny_lm(tmp_path / "lm")) == "causal-lm"
    assert model_kind(resolve_model("minilm-l6")) == "encoder"


def test_a_folder_without_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^Cannot read .*config\.json .*; model.name must point at a Hugging Face "
                                          r"save_pretrained folder\.$"):
        model_kind(tmp_path)
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        model_kind(folder(tmp_path, ["not", "a", "mapping"]))
