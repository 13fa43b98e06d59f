"""Chinese end to end: `lmforge run --strict` on a zh-reviews slice reads the text and beats the majority class."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow


def test_zh_reviews_slice_beats_the_majority_class_by_the_margin(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "lmforge.cli.__main__", "run", "recipes/zh-reviews.yaml", "--out", str(out),
         "--no-progress", "--strict", "--set", "data.max_examples=1500", "--set", "model.max_length=64",
         # the English model, so that the vocabulary extension is what reads the text (the recipe
         # itself leaves model.name to the Han-script default, m3e-small)
         "--set", "model.name=minilm-l6",
         "--set", "train.epochs=2"],
        cwd=REPO, env=cli_env(tmp_path), capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]  # --strict: 3 at chance level
    metrics = json.loads((out / "eval" / "metrics.json").read_text(encoding="utf-8"))
    check, majority = metrics["baseline_check"], metrics["baselines"]["majority"]
    assert check["beats"] is True and check["fitted_on"] == "train"
    assert metrics["accuracy"] >= majority["accuracy"] + 0.05 * (1 - majority["accuracy"])
    assert metrics["macro_f1"] >= check["required_macro_f1"]
    readable = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["train"]["readability"]
    assert readable["before"]["script"] == "Han" and readable["before"]["unknown_rate"] > 0.3
    assert readable["extension"]["added"] > 500 and readable["after"]["unknown_rate"] < 0.02
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "characters added to the vocabulary" in card and "The model beats the majority-class baseline" in card
