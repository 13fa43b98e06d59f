"""Data-parallel training: `lmforge train RUN --nproc-per-node 2` (torchrun, gloo on CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tests._runs import write_prepared
from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]


def _spec(run: Path, **train: object) -> None:
    from lmforge.config import spec_from_dict, spec_to_yaml

    cfg = {"max_steps": 6, "batch_size": 8, "learning_rate": 5e-4, "warmup_ratio": 0.0, "eval_steps": 3,
           "early_stopping_patience": None, "threads": 1, **train}
    spec = spec_from_dict({"model": {"max_length": 32}, "train": cfg})
    (run / "spec.yaml").write_text(spec_to_yaml(spec), encoding="utf-8")


def test_two_processes_train_one_model_with_one_writer(tmp_path: Path) -> None:
    run = write_prepared(tmp_path / "run").root
    _spec(run)
    env = cli_env(tmp_path)
    env["LMFORGE_KEEP_CHECKPOINTS"] = "1"
    proc = subprocess.run([*LMFORGE, "train", str(run), "--nproc-per-node", "2", "--no-progress"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("trained ") == 1, proc.stdout  # rank 0 alone reports
    assert "on 2 processes" in proc.stdout

    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["train"]["world_size"] == 2 and manifest["train"]["steps"] == 6
    assert (run / "signature.json").is_file()
    # Checkpoints at steps 3 and 6, each complete (one RNG state per rank), no staging left behind.
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-3", "checkpoint-6"], ckpts
    for name in ckpts:
        files = {p.name for p in (run / "checkpoints" / name).iterdir()}
        assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json", "model.safetensors"} <= files, files
    # One writer of the training log: each training step's loss and each evaluation logged once.
    records = [json.loads(line) for line in (run / "logs" / "train.log").read_text(encoding="utf-8").splitlines()]
    loss_steps = [r["step"] for r in records if "loss" in r]
    assert loss_steps and len(loss_steps) == len(set(loss_steps)), loss_steps
    assert [r["step"] for r in records if "eval_macro_f1" in r] == [3, 6]

    weights = load_file(run / "model" / "model.safetensors")
    assert "classifier.weight" in weights and weights["classifier.weight"].shape[0] == 2

    # The trained model separates the two classes of the easy task.
    predict = subprocess.run([*LMFORGE, "predict", str(run), "--text", "great flight, thank you",
                              "--text", "lost my bag again, terrible"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300, check=False)
    assert predict.returncode == 0, predict.stderr[-2000:]
    labels = [p["label"] for p in json.loads(predict.stdout)]
    assert labels == ["positive", "negative"], labels


def test_global_batch_must_split_evenly(tmp_path: Path) -> None:
    run = write_prepared(tmp_path / "run").root
    _spec(run, batch_size=7)
    proc = subprocess.run([*LMFORGE, "train", str(run), "--nproc-per-node", "2"], cwd=REPO,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "train.batch_size 7 does not split evenly over 2 processes" in proc.stderr
    assert "Traceback" not in proc.stderr and not (run / "model").exists()
