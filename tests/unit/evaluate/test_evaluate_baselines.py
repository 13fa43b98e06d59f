"""Baselines that never read a text: exact numbers on a hand-made split, the margin rule, and
`lmforge evaluate --strict` exiting 3 for a model at chance level (a tiny BERT built in the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests._tiny_bert import build_tiny_bert, write_zh_prepared

from lmforge.config import spec_from_dict
from lmforge.metrics import baseline_scores, beats_baselines, required_score
from lmforge.rundir import RunDir
from lmforge.train import train


def test_majority_and_stratified_numbers_are_exact() -> None:
    y_train = [1, 1, 1, 0, 2]  # majority: class 1
    y_test = [1, 0, 1, 2, 1, 0]
    scores = baseline_scores(y_train, y_test, 3, seed=7)
    # Always 1: 3 of 6 right; F1 of class 1 = 2*3 / (3 + 6) = 2/3, classes 0 and 2 score 0.
    assert scores["majority"] == {"accuracy": 0.5, "macro_f1": (2 / 3) / 3, "class": 1}
    guess = np.random.default_rng(7).choice(3, size=6, p=[0.2, 0.6, 0.2])
    assert scores["stratified"]["accuracy"] == float((guess == np.array(y_test)).mean())
    assert scores["stratified"]["seed"] == 7
    assert baseline_scores(y_train, y_test, 3, seed=7) == scores  # seeded: the same numbers again


def test_ties_go_to_the_lowest_class() -> None:
    assert baseline_scores([0, 1, 1, 0], [1, 1], 2, seed=0)["majority"]["class"] == 0


def test_the_margin_closes_a_share_of_the_gap_to_perfect() -> None:
    assert required_score(0.52, 0.05) == pytest.approx(0.544)
    base = {"majority": {"accuracy": 0.52, "macro_f1": 0.3421}, "stratified": {"accuracy": 0.5, "macro_f1": 0.5}}
    # The chance-level run: accuracy 0.52, macro-F1 0.3421 (everything predicted as the majority).
    assert beats_baselines(0.52, 0.3421, base, 0.05)["beats"] is False
    # Both are held against the majority class: 0.3421 + 0.05 * (1 - 0.3421) = 0.374995.
    assert beats_baselines(0.80, 0.79, base, 0.05) == {"margin": 0.05, "required_accuracy": 0.544,
                                                        "required_macro_f1": 0.374995, "beats": True}
    assert beats_baselines(0.53, 0.52, base, 0.05)["beats"] is False  # a coin flip: macro-F1 fine, accuracy not
    assert beats_baselines(0.60, 0.36, base, 0.05)["beats"] is False  # accuracy fine, macro-F1 not


@pytest.fixture(scope="module")
def chance_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny run whose test split is one text, labeled half pos, half neg: no model beats the majority."""
    tiny = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")
    root = write_zh_prepared(tmp_path_factory.mktemp("chance") / "run")
    rows = [{"text": "这家餐厅的菜很好吃", "label": label} for label in ("pos", "neg") * 4]
    (root / "data" / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": 32},
                           "train": {"max_steps": 2, "batch_size": 8, "early_stopping_patience": None}})
    (root / "spec.yaml").write_text(json.dumps({"model": {"name": str(tiny), "max_length": 32}}), encoding="utf-8")
    train(spec, RunDir(root), progress=False)
    return root


def _evaluate(run: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMFORGE_AUTO_SIGN": "0"}
    return subprocess.run([sys.executable, "-m", "lmforge.cli", "evaluate", str(run), "--allow-unsigned", *flags],
                          capture_output=True, text=True, env=env, check=False)


def test_strict_exits_3_for_a_model_at_chance_level(chance_run: Path) -> None:
    plain = _evaluate(chance_run)
    assert plain.returncode == 0, plain.stderr
    assert "CHANCE LEVEL" in plain.stdout and "majority class: accuracy 0.5000" in plain.stdout
    assert "CHANCE LEVEL" in plain.stderr  # the logged warning
    metrics = json.loads((chance_run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["baseline_check"]["beats"] is False and metrics["accuracy"] == 0.5
    assert "does NOT beat the majority-class baseline" in (chance_run / "MODEL_CARD.md").read_text(encoding="utf-8")

    strict = _evaluate(chance_run, "--strict")
    assert strict.returncode == 3, strict.stderr
