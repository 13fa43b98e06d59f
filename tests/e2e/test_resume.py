"""SIGKILL training after a checkpoint, resume, and compare weights bit for bit.

The test proves a resume happened, not only that the weights match: the killed run had
written a complete ``checkpoint-N`` and logged a step past it, the resumed run records
``train.resumed_from: checkpoint-N`` in the manifest, and its first logged step is N + 1
(``logging_steps=1``), so it did not start again from step 0.
"""

from __future__ import annotations

import json
import os
import re
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
MAX_STEPS = 16
SETTINGS = ["--set", "data.max_examples=400", "--set", f"train.max_steps={MAX_STEPS}", "--set", "train.eval_steps=4",
            "--set", "train.batch_size=16", "--set", "train.early_stopping_patience=null",
            "--set", "train.dropout=0.2", "--set", "train.logging_steps=1"]
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
HANG = 600  # seconds: only bounds a hang, never a measurement


def _env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path)
    env["LMFORGE_KEEP_CHECKPOINTS"] = "1"
    return env


def _prepare(tmp_path: Path, out: Path) -> None:
    subprocess.run([*LMFORGE, "prepare", "recipes/quick.yaml", "--out", str(out), *SETTINGS],
                   cwd=REPO, env=_env(tmp_path), check=True, capture_output=True, timeout=300)


def _logged_steps(log: Path) -> list[int]:
    """The ``step`` of every complete record in ``logs/train.log`` (a killed writer may leave half a line)."""
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    return [json.loads(line)["step"] for line in lines if line.endswith("\n")]


def _complete_checkpoints(root: Path) -> list[int]:
    """Steps of the complete checkpoints (only complete ones are renamed to ``checkpoint-N``)."""
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT.fullmatch(p.name)))


def test_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _prepare(tmp_path, straight)
    _prepare(tmp_path, killed)

    subprocess.run([*LMFORGE, "train", str(straight), "--no-progress"], cwd=REPO, env=_env(tmp_path),
                   check=True, capture_output=True, timeout=HANG)

    proc = subprocess.Popen([*LMFORGE, "train", str(killed), "--no-progress"], cwd=REPO, env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "logs" / "train.log"
    deadline = time.monotonic() + HANG
    # Kill once checkpoint-8 is complete and a later step was logged: mid-training, past a checkpoint.
    while not ((killed / "checkpoints" / "checkpoint-8").is_dir() and max(_logged_steps(log), default=0) > 8):
        assert proc.poll() is None, "training ended before checkpoint-8 and step 9 appeared"
        assert time.monotonic() < deadline, "no checkpoint-8 within the hang deadline"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "killed before the end: no model may be there"
    at_kill = _complete_checkpoints(killed / "checkpoints")
    newest = at_kill[-1]
    assert 8 <= newest < MAX_STEPS, f"killed mid-training after checkpoint-8; complete checkpoints: {at_kill}"
    logged_before = _logged_steps(log)
    assert logged_before[0] == 1 and max(logged_before) > 8, logged_before

    done = subprocess.run([*LMFORGE, "train", str(killed), "--resume", "--no-progress"], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr[-3000:]

    manifest = json.loads((killed / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["train"]["resumed_from"] == f"checkpoint-{newest}"
    assert manifest["train"]["steps"] == MAX_STEPS
    straight_manifest = json.loads((straight / "manifest.json").read_text(encoding="utf-8"))
    assert straight_manifest["train"]["resumed_from"] is None
    # The resumed process appended to the log; its first record is the step after the checkpoint.
    logged_after = _logged_steps(log)[len(logged_before):]
    assert logged_after[0] == newest + 1, f"resumed from checkpoint-{newest}, first logged step {logged_after[0]}"
    assert max(logged_after) == MAX_STEPS

    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert different == []
