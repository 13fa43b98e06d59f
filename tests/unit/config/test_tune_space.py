"""The `tune:` section: its forms, and every space key and value checked against the spec schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmforge.cli.__main__ import main
from lmforge.config import range_kind, spec_from_dict, spec_with_params
from lmforge.errors import ConfigError

SPACE = {
    "train.learning_rate": {"low": 1.0e-5, "high": 1.0e-3, "log": True},
    "train.lora.r": [4, 8, 16],
    "train.method": ["lora", "full"],
    "train.epochs": {"low": 1, "high": 3, "step": 0.5},
}


def _problems(tune: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        spec_from_dict({"tune": tune})
    return info.value.problems


def test_the_issue_example_parses_and_defaults_fill_in() -> None:
    tune = spec_from_dict({"tune": {"trials": 12, "timeout": 3600, "objective": "macro_f1", "pruner": "median",
                                    "space": SPACE}}).tune
    assert (tune.trials, tune.timeout, tune.objective, tune.resolved_pruner) == (12, 3600.0, "macro_f1", "median")
    assert tune.space == SPACE
    assert spec_from_dict({}).tune.resolved_pruner == "median"
    two = spec_from_dict({"tune": {"second_objective": "latency_ms"}}).tune
    assert two.resolved_pruner == "none"  # Optuna cannot prune a multi-objective study


def test_unknown_space_key_suggests_the_right_one() -> None:
    assert _problems({"space": {"train.learning_rat": [1e-3]}}) == [
        "Unknown key 'tune.space.train.learning_rat': the spec has no key 'train.learning_rat'. "
        "Did you mean 'train.learning_rate'?"
    ]
    assert _problems({"spce": {}}) == ["Unknown key 'tune.spce'. Did you mean 'space'?"]


@pytest.mark.parametrize(("space", "message"), [
    ({"data.seed": [1, 2]}, "tune.space.data.seed: data cannot be searched: every trial trains on the one split "
                            "`lmforge tune` prepares first."),
    ({"train.method": {"low": 1, "high": 2}}, "tune.space.train.method: a range needs a numeric key, and "
                                              "train.method is a string; give a list of choices instead."),
    ({"train.batch_size": {"low": 1.5, "high": 4}}, "tune.space.train.batch_size: train.batch_size is an integer, "
                                                    "so low, high and step must be integers."),
    ({"train.learning_rate": {"low": 1e-5, "high": 2.0}},
     "tune.space.train.learning_rate: with train.learning_rate = 2.0: train.learning_rate must be in (0, 1), got 2.0."),
    ({"train.optimizer": ["adamw", "adam"]},
     "tune.space.train.optimizer (choice 'adam') must be one of 'adamw', 'sgd', 'rmsprop', got 'adam'. "
     "Did you mean 'adamw'?"),
    ({"train.lora.r": ["eight"]}, "tune.space.train.lora.r (choice 'eight') must be an integer, got 'eight'."),
    ({"train.warmup_ratio": {"low": 0.0, "high": 0.2, "log": True}},
     "tune.space.train.warmup_ratio: a log range needs low > 0, got 0.0."),
    ({"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}},
     "tune.space.train.learning_rate: a range is either log or stepped, not both (Optuna samples one or the other)."),
    ({"train.epochs": {"low": 3, "high": 1}}, "tune.space.train.epochs: low (3) must be below high (1)."),
    ({"train.epochs": {"low": 1, "high": 3, "lo": 2}},
     "tune.space.train.epochs: unknown range key 'lo'; a range has low, high, log, step."),
    ({"train.epochs": []}, "tune.space.train.epochs is an empty list: give at least one choice."),
    ({"train.epochs": 2}, "tune.space.train.epochs must be a list of choices or a range {low, high, log, step}, got 2."),
])
def test_a_bad_space_entry_is_one_clear_problem(space: dict, message: str) -> None:
    assert _problems({"space": space}) == [message]


def test_budget_objective_and_pruner_are_checked() -> None:
    assert _problems({"trials": 0}) == ["tune.trials must be at least 1, got 0."]
    assert _problems({"timeout": -5}) == ["tune.timeout must be a positive number of seconds (or null), got -5.0."]
    assert _problems({"objective": "acuracy"}) == [
        "tune.objective must be one of 'accuracy', 'macro_f1', got 'acuracy'. Did you mean 'accuracy'?"]
    assert _problems({"second_objective": "latency_ms", "pruner": "median"}) == [
        "tune.pruner is 'median' but tune.second_objective is set: Optuna cannot prune a multi-objective study. "
        "Set tune.pruner: none (or leave it unset)."]


def test_a_trial_spec_has_the_values_and_no_tune_section() -> None:
    spec = spec_from_dict({"train": {"epochs": 2}, "tune": {"space": SPACE}})
    trial = spec_with_params(spec, {"train.lora.r": 16, "train.learning_rate": 3e-4, "train.method": "lora"})
    assert (trial.train.lora.r, trial.train.learning_rate, trial.train.method, trial.train.epochs) == (16, 3e-4, "lora", 2.0)
    assert trial.tune.space == {} and spec.tune.space == SPACE  # the base spec is left alone
    with pytest.raises(ConfigError, match=r"train.eval_steps \(4\) and train.save_steps \(6\) must agree"):
        spec_with_params(spec, {"train.eval_steps": 4, "train.save_steps": 6})
    assert (range_kind("train.lora.r"), range_kind("train.learning_rate"), range_kind("train.eval_steps")) == (
        int, float, int)


def test_lmforge_tune_with_a_bad_space_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"tune": {"space": {"train.lerning_rate": [1e-3]}}}), encoding="utf-8")
    assert main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: Unknown key 'tune.space.train.lerning_rate': the spec has no key "
                   "'train.lerning_rate'. Did you mean 'train.learning_rate'?")
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump({"tune": {"trials": 3}}), encoding="utf-8")
    assert main(["tune", str(empty), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: tune.space is empty: name the spec keys to search")
