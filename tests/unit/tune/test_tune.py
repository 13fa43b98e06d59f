"""`lmforge.tune.tune` on real (tiny) trials: pruning, the timeout, two objectives, the best run and the report."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from tests._chromium import MISSING, Browser, chromium_installed
from tests._tune_task import write_tune_task

from lmforge.config import spec_from_dict
from lmforge.predict import load_predictor
from lmforge.rundir import FP32, RunDir
from lmforge.tune import REPORT, STUDY_DB, STUDY_NAME, format_table, trial_dir, tune

pytestmark = pytest.mark.slow

LR_RANGE = {"train.learning_rate": {"low": 1e-9, "high": 1e-1, "log": True}}
GOOD_LR, HOPELESS_LR = 1e-2, 1e-9  # 1e-2 reaches macro-F1 1.0 in a few steps; 1e-9 never leaves chance


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_DB}")


def test_a_hopeless_trial_is_pruned_and_the_good_one_becomes_best(tmp_path: Path) -> None:
    out = tmp_path / "search"
    raw = write_tune_task(tmp_path, space=LR_RANGE, trials=2, max_steps=8, eval_steps=2, pruner="median")
    # The order is fixed by enqueueing: a good trial first, then one whose learning rate leaves it at chance.
    out.mkdir()
    seeded = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_DB}", direction="maximize")
    seeded.enqueue_trial({"train.learning_rate": GOOD_LR})
    seeded.enqueue_trial({"train.learning_rate": HOPELESS_LR})

    result = tune(spec_from_dict(raw), out)

    trials = _study(out).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    good, hopeless = trials
    assert good.value == 1.0
    pruned_at = hopeless.user_attrs["pruned_at_step"]
    assert max(hopeless.intermediate_values) == pruned_at < 8
    assert hopeless.intermediate_values[pruned_at] < good.intermediate_values[pruned_at]
    manifest = RunDir(trial_dir(out, 1)).read_manifest()
    assert manifest["train"]["steps"] == pruned_at  # training stopped at the pruning, not at max_steps
    assert manifest["tune"] == {"trial": 1, "params": {"train.learning_rate": HOPELESS_LR}}

    assert result.summary["best_trial"] == 0 and result.best == out / "best"
    best = RunDir(result.best)
    assert best.read_manifest()["tune"]["trial"] == 0
    assert json.loads((best.eval_dir / "metrics.json").read_text())["n_test"] == result.test_metrics["n_test"] > 0
    predictor = load_predictor(best, FP32)
    assert [p["label"] for p in predictor.predict(["lost my bag again, terrible", "best airline ever, thanks"])] == [
        "negative", "positive"]

    table = format_table(result.rows, "macro_f1").splitlines()
    assert table[0].split() == ["trial", "state", "macro_f1", "seconds", "params", "note"]
    assert table[1].split()[:3] == ["0", "COMPLETE", "1.0000"] and table[1].endswith("train.learning_rate=0.01")
    assert table[2].split()[:2] == ["1", "PRUNED"] and table[2].endswith(f"pruned at step {pruned_at}")
    assert (out / "optimization_history.png").is_file() and not (out / "param_importances.png").exists()
    assert not (out / "pareto_front.png").exists()


def test_the_timeout_stops_new_trials_and_a_rerun_continues(tmp_path: Path) -> None:
    out = tmp_path / "search"
    raw = write_tune_task(tmp_path, space={"train.learning_rate": [GOOD_LR]}, trials=3, max_steps=4, eval_steps=2,
                          pruner="none", timeout=0.5)
    result = tune(spec_from_dict(raw), out)
    first = _study(out).get_trials()
    assert len(first) == 1 and first[0].state == optuna.trial.TrialState.COMPLETE
    assert first[0].user_attrs["seconds"] > 0.5  # it outlived the timeout: the timeout let it finish
    assert result.summary["stopped_by"] == "timeout" and result.summary["finished"] == 1

    again = tune(spec_from_dict(raw), out, trials=2, timeout=600)  # --trials/--timeout override the spec
    trials = _study(out).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert trials[0].datetime_complete == first[0].datetime_complete  # the finished trial was not run again
    assert again.summary["stopped_by"] == "trials"


def test_two_objectives_give_a_pareto_front_importances_and_a_report_that_renders(tmp_path: Path) -> None:
    out = tmp_path / "search"
    raw = write_tune_task(tmp_path, space={"train.lora.r": [1, 8], "train.learning_rate": [GOOD_LR, 5e-3]},
                          trials=2, max_steps=6, eval_steps=3, second_objective="trainable_params")
    out.mkdir()
    seeded = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_DB}",
                                 directions=["maximize", "minimize"])
    seeded.enqueue_trial({"train.lora.r": 1, "train.learning_rate": GOOD_LR})
    seeded.enqueue_trial({"train.lora.r": 8, "train.learning_rate": 5e-3})

    result = tune(spec_from_dict(raw), out)

    trials = _study(out).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    params = [t.values[1] for t in trials]
    manifests = [RunDir(trial_dir(out, i)).read_manifest()["train"]["trainable_parameters"] for i in (0, 1)]
    assert params == manifests and params[0] < params[1]  # rank 1 trains fewer parameters than rank 8
    for name in ("optimization_history.png", "param_importances.png", "pareto_front.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (out / REPORT).read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    assert page.count('src="data:image/png;base64,') == 3
    assert result.summary["best_trial"] in (0, 1)
    if not chromium_installed():
        pytest.skip(MISSING)
    with Browser(tmp_path / "profile") as browser:
        browser.goto((out / REPORT).as_uri())
        assert browser.eval("document.querySelectorAll('table.trials tbody tr').length") == 2
        assert browser.eval("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)") is True
        assert browser.eval("document.querySelector('table.trials tbody tr td:nth-child(2)').textContent") == "COMPLETE"
