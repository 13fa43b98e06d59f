"""SIGKILL training after a checkpoint, resume, and compare weights bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]
SETTINGS = ["--set", "data.max_examples=400", "--set", "train.max_steps=16", "--set", "train.eval_steps=4",
            "--set", "train.batch_size=16", "--set", "train.early_stopping_patience=null",
            "--set", "train.dropout=0.2"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path)
    env["LMFORGE_KEEP_CHECKPOINTS"] = "1"
    return env


def _prepare(tmp_path: Path, out: Path) -> None:
    subprocess.run([*LMFORGE, "prepare", "recipes/quick.yaml", "--out", str(out), *SETTINGS],
                   cwd=REPO, env=_env(tmp_path), check=True, capture_output=True, timeout=300)


def test_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _prepare(tmp_path, straight)
    _prepare(tmp_path, killed)

    subprocess.run([*LMFORGE, "train", str(straight), "--no-progress"], cwd=REPO, env=_env(tmp_path),
                   check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen([*LMFORGE, "train", str(killed), "--no-progress"], cwd=REPO, env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    target = killed / "checkpoints" / "checkpoint-8"
    while not target.exists():
        assert proc.poll() is None, "training ended before the checkpoint appeared"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # let it get into the next steps
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "killed before the end: no model may be there"

    done = subprocess.run([*LMFORGE, "train", str(killed), "--resume", "--no-progress"], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert different == []
