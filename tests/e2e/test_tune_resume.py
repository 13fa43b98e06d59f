"""SIGKILL a real `lmforge tune` in the middle of a trial, run it again, and count the trials in the study.

The killed trial (RUNNING in the study when its process died) must be marked failed and its
parameters run again; the trials that had finished must not run again; in the end the study
holds exactly the trials asked for as COMPLETE, and `lmforge predict` accepts ``DIR/best``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from tests._tune_task import write_tune_task
from tests.conftest import REPO, cli_env

from lmforge.tune import STUDY_DB, STUDY_NAME, trial_dir

pytestmark = pytest.mark.slow

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]
TRIALS = 3
HANG = 900  # seconds: only bounds a hang, never a measurement


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_DB}")


def _mid_trial(out: Path) -> int | None:
    """The number of a trial after the first that has started training and not finished, if any."""
    for number in range(1, TRIALS + 1):
        run = trial_dir(out, number)
        if (run / "logs" / "train.log").is_file() and not (run / "model").exists():
            return number
    return None


def test_tune_resumes_after_sigkill_with_no_trial_lost_or_run_twice(tmp_path: Path) -> None:
    out = tmp_path / "search"
    raw = write_tune_task(tmp_path, space={"train.learning_rate": {"low": 3e-3, "high": 1e-2, "log": True},
                                           "train.lora.r": [2, 4]},
                          trials=TRIALS, max_steps=8, eval_steps=4, pruner="none")
    spec = tmp_path / "tune.yaml"
    spec.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = cli_env(tmp_path)
    cmd = [*LMFORGE, "tune", str(spec), "--out", str(out)]

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + HANG
    while (killed := _mid_trial(out)) is None:
        assert proc.poll() is None, "lmforge tune ended before a second trial was training"
        assert time.monotonic() < deadline, "no trial was training within the hang deadline"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    before = _study(out).get_trials()
    states = [t.state for t in before]
    assert states[killed] == optuna.trial.TrialState.RUNNING and states.count(optuna.trial.TrialState.RUNNING) == 1
    finished = {t.number: t.datetime_complete for t in before if t.state == optuna.trial.TrialState.COMPLETE}
    assert set(finished) == set(range(killed))

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr[-3000:]

    after = _study(out).get_trials()
    complete = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in after if t.state == optuna.trial.TrialState.FAIL]
    assert len(complete) == TRIALS and len(after) == TRIALS + 1
    assert [t.number for t in failed] == [killed] and failed[0].user_attrs["killed"] is True
    retry = [t for t in complete if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].params == before[killed].params  # the killed trial's values, run again
    for t in complete:
        if t.number in finished:
            assert t.datetime_complete == finished[t.number]  # finished before the kill: not run again
    assert "killed; retried" in done.stdout and "best: trial" in done.stdout

    best = out / "best"
    manifest = json.loads((best / "manifest.json").read_text(encoding="utf-8"))
    winner = max(complete, key=lambda t: (t.value, -t.number))
    assert manifest["tune"]["trial"] == winner.number and manifest["tune"]["values"] == [winner.value]
    predicted = subprocess.run([*LMFORGE, "predict", str(best), "--text", "lost my bag again, terrible"], cwd=REPO,
                               env=env, capture_output=True, text=True, timeout=HANG)
    assert predicted.returncode == 0, predicted.stderr[-3000:]  # signed and verified like any run
    rows = json.loads(predicted.stdout[predicted.stdout.index("["):])
    assert [r["text"] for r in rows] == ["lost my bag again, terrible"] and rows[0]["label"] in {"negative", "positive"}
