"""One real generative run on the packaged SmolLM2-135M: `lmforge run --set task=generate` on a
repeated toy pair writes the run directory of a causal LM, and its training loss falls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmforge.evaluate
from lmforge.cli.__main__ import main

# The session converts SmolLM2 from GGUF first (~25 s idle); on 2 shared, busy cores both that and
# the few training steps take minutes, past the suite's default 900 s timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

PAIR = {"prompt": "What is the magic word?", "response": "The magic word is banana."}


def test_smollm2_learns_a_repeated_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(PAIR) + "\n" for _ in range(20)), encoding="utf-8")
    out = tmp_path / "run"
    sets = ["task=generate", f"data.path={data}", "data.dedupe=false", "data.val_fraction=0.1",
            "data.test_fraction=0.1", "model.max_length=64", "train.max_steps=4", "train.batch_size=2",
            "train.learning_rate=0.003", "train.warmup_ratio=0", "train.logging_steps=1", "train.eval_steps=4"]
    assert main(["run", *[a for s in sets for a in ("--set", s)], "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()

    evaluated = hasattr(lmforge.evaluate, "evaluate_generation")
    top = {"data", "logs", "manifest.json", "model", "signature.json", "spec.yaml"}
    assert {p.name for p in out.iterdir()} >= top
    assert ("eval" in {p.name for p in out.iterdir()}) is evaluated
    assert {p.name for p in (out / "data").iterdir()} == {"train.jsonl", "val.jsonl", "test.jsonl",
                                                           "data_report.json"}
    assert {p.name for p in (out / "model").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors",
                                                            "tokenizer.json", "tokenizer_config.json",
                                                            "lmforge_model.json"}
    meta = json.loads((out / "model" / "lmforge_model.json").read_text(encoding="utf-8"))
    assert (meta["kind"], meta["task"], meta["format"], meta["base_model"]) == (
        "causal-lm", "generate", "peft-adapter", "smollm2-135m")
    assert "<|im_start|>" in meta["chat_template"]
    adapter = json.loads((out / "model" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["task_type"] == "CAUSAL_LM"
    assert sorted(adapter["target_modules"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                                 "v_proj"]
    losses = [r["loss"] for r in map(json.loads, (out / "logs" / "train.log").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["train"]["train_tokens"] > 0 and manifest["train"]["tokens_per_second"] > 0
    assert manifest["spec"]["task"] == "generate" and manifest["spec"]["train"]["method"] == "lora"
