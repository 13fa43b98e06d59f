from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import Spec, load_spec, spec_from_dict, spec_to_dict, spec_to_yaml
from lmforge.errors import ConfigError


def test_empty_spec_is_the_embedded_default() -> None:
    spec = spec_from_dict({})
    assert spec.data.dataset == "airline-tweets"
    assert spec.model.name == "minilm-l6"
    assert spec.train.method == "full"


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    spec = load_spec(None, ["train.method=lora", "train.lora.r=4", "data.max_examples=100"])
    path = tmp_path / "spec.yaml"
    path.write_text(spec_to_yaml(spec), encoding="utf-8")
    again = load_spec(path)
    assert again == spec
    assert spec_to_dict(again)["train"]["lora"]["r"] == 4


def test_overrides_parse_yaml_values_and_create_sections() -> None:
    spec = load_spec(None, ["train.epochs=2", "train.dropout=0.2", "data.path=x.csv", "train.eval_steps=null"])
    assert spec.train.epochs == 2.0 and isinstance(spec.train.epochs, float)
    assert spec.train.dropout == 0.2
    assert spec.data.path == "x.csv"
    assert spec.train.eval_steps is None


def test_every_problem_is_reported_at_once_with_suggestions() -> None:
    raw = {
        "data": {"pathh": "x.csv", "val_fraction": "abc"},
        "train": {"optimizer": "adamx", "epochs": -1, "batch_size": -1},
        "modle": {},
    }
    with pytest.raises(ConfigError) as info:
        spec_from_dict(raw)
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) == 6, problems
    assert "Did you mean 'path'?" in text
    assert "Did you mean 'model'?" in text
    assert "Did you mean 'adamw'?" in text
    assert "data.val_fraction must be a number, got 'abc'" in text
    assert "train.epochs must be positive" in text
    assert "train.batch_size must be at least 1" in text


def test_type_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train.max_steps must be an integer or null, got 2.5"):
        spec_from_dict({"train": {"max_steps": 2.5}})
    with pytest.raises(ConfigError, match=r"data.dedupe must be true or false"):
        spec_from_dict({"data": {"dedupe": "yes"}})


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="eval_steps .* and train.save_steps .* must agree"):
        spec_from_dict({"train": {"eval_steps": 10, "save_steps": 20}})
    with pytest.raises(ConfigError, match="leave at least 10% of the data for training"):
        spec_from_dict({"data": {"val_fraction": 0.5, "test_fraction": 0.45}})


def test_bad_override_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_spec(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="Spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_spec(listy)


def test_spec_is_plain_data() -> None:
    # Names, not classes: every value in the dict form is a YAML scalar, list or mapping.
    def walk(node: object) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        else:
            assert node is None or isinstance(node, str | int | float | bool), node

    walk(spec_to_dict(Spec()))


def test_exponent_notation_is_a_number_in_yaml_and_overrides(tmp_path: Path) -> None:
    """YAML 1.1 (PyYAML) reads ``2e-5`` without a dot as a string; a spec means the number."""
    from lmforge.config import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text("train:\n  learning_rate: 2e-5\n  weight_decay: 1E-2\n", encoding="utf-8")
    spec = load_spec(path, ["train.max_grad_norm=5e-1"])
    assert (spec.train.learning_rate, spec.train.weight_decay, spec.train.max_grad_norm) == (2e-5, 0.01, 0.5)
    with pytest.raises(ConfigError, match="train.learning_rate must be a number, got '2e'"):
        load_spec(path, ["train.learning_rate=2e"])
