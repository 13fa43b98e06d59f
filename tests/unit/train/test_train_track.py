"""Experiment tracking (``train.track``): the spec check, where the MLflow store is, and a real
tiny run logged to MLflow, read back with MLflow's own client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests._runs import write_prepared

from lmforge._mlflow import store_location, uri_problem
from lmforge.config import spec_from_dict
from lmforge.errors import ConfigError


def test_track_defaults_to_tensorboard_and_an_empty_list_is_allowed() -> None:
    assert spec_from_dict({}).train.track == ["tensorboard"]
    assert spec_from_dict({}).train.mlflow_uri is None
    assert spec_from_dict({"train": {"track": []}}).train.track == []
    assert spec_from_dict({"train": {"track": ["mlflow", "tensorboard"]}}).train.track == ["mlflow", "tensorboard"]


def test_an_unknown_tracker_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        spec_from_dict({"train": {"track": ["mlfow", "wandb", "tensorboard", "tensorboard"]}})
    assert err.value.problems == [
        "train.track: unknown tracker 'mlfow'. Did you mean 'mlflow'? Known: mlflow, tensorboard.",
        "train.track: unknown tracker 'wandb'. Known: mlflow, tensorboard.",
        "train.track names a tracker twice: ['mlfow', 'wandb', 'tensorboard', 'tensorboard'].",
    ]


@pytest.mark.parametrize("uri, problem", [
    ("file:///tmp/mlruns", "train.mlflow_uri 'file:///tmp/mlruns' is an MLflow file store, which MLflow 3 no longer "
                           "opens by default. Use a folder path (it holds mlflow.db and artifacts/) or a sqlite:/// URI."),
    ("http://127.0.0.1:5000", "train.mlflow_uri 'http://127.0.0.1:5000' is not a local store: lmforge logs to a local "
                              "SQLite store, no server. Use a folder path or a sqlite:/// URI."),
    ("sqlite:///", "train.mlflow_uri 'sqlite:///' names no database file."),
])
def test_a_store_that_is_not_local_sqlite_is_refused(uri: str, problem: str) -> None:
    assert uri_problem(uri) == problem
    with pytest.raises(ConfigError) as err:
        spec_from_dict({"train": {"mlflow_uri": uri}})
    assert err.value.problems == [problem]


def test_store_location_for_each_setting(tmp_path: Path) -> None:
    own = tmp_path / "run" / "logs" / "mlflow"
    assert store_location(None, own) == (f"sqlite:///{own.resolve()}/mlflow.db", own.resolve() / "artifacts")
    shared = tmp_path / "store"
    assert store_location(str(shared), own) == (f"sqlite:///{shared.resolve()}/mlflow.db",
                                                shared.resolve() / "artifacts")
    db = tmp_path / "db" / "x.db"
    assert store_location(f"sqlite:///{db}", own) == (f"sqlite:///{db}", db.parent.resolve() / "artifacts")
    assert uri_problem(str(shared)) is None and uri_problem(f"sqlite:///{db}") is None


def test_flatten_gives_dotted_keys() -> None:
    from lmforge.train._track import flatten

    assert flatten({"name": "x", "train": {"lr": 0.1, "lora": {"r": 8, "target_modules": None}}, "empty": {}}) == {
        "name": "x", "train.lr": 0.1, "train.lora.r": 8, "train.lora.target_modules": None, "empty": {},
    }


def test_no_tracker_and_other_ranks_add_no_callbacks(tmp_path: Path) -> None:
    from lmforge.rundir import RunDir
    from lmforge.train._track import MlflowCallback, tracking_callbacks

    run = RunDir(tmp_path / "run")
    assert tracking_callbacks(spec_from_dict({"train": {"track": []}}), run, 0) == ([], None)
    assert tracking_callbacks(spec_from_dict({"train": {"track": ["mlflow", "tensorboard"]}}), run, 1) == ([], None)
    callbacks, writer = tracking_callbacks(spec_from_dict({"train": {"track": ["mlflow"]}}), run, 0)
    assert [type(c) for c in callbacks] == [MlflowCallback] and writer is None
    assert not (run.logs_dir / "tensorboard").exists()


@pytest.mark.slow
def test_a_tiny_run_logs_params_metrics_and_artifacts_to_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from lmforge.evaluate import evaluate
    from lmforge.train import train

    run = write_prepared(tmp_path / "run-a")
    store = tmp_path / "store"
    spec = spec_from_dict({
        "name": "track-test", "model": {"max_length": 32},
        "train": {"max_steps": 6, "eval_steps": 2, "logging_steps": 1, "batch_size": 8, "learning_rate": 3e-4,
                  "warmup_ratio": 0.0, "early_stopping_patience": None, "track": ["mlflow"],
                  "mlflow_uri": str(store)},
    })
    summary = train(spec, run, progress=False)
    metrics = evaluate(spec, run)

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("track-test")
    (found,) = client.search_runs([experiment.experiment_id])
    run_id = found.info.run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "run-a"
    assert summary["mlflow"] == {"uri": str(store), "tracking_uri": f"sqlite:///{store.resolve()}/mlflow.db",
                                 "experiment_id": experiment.experiment_id, "run_id": run_id}
    assert json.loads(run.manifest_path.read_text())["train"]["mlflow"]["run_id"] == run_id
    params = found.data.params
    assert params["train.learning_rate"] == "0.0003"
    assert params["train.max_steps"] == "6" and params["model.max_length"] == "32"
    assert params["train.track"] == "['mlflow']" and params["name"] == "track-test"
    assert found.data.tags["lmforge.run_dir"] == str(run.root)

    evals = client.get_metric_history(run_id, "eval_macro_f1")
    assert [m.step for m in evals] == [2, 4, 6]
    log = [json.loads(line) for line in (run.logs_dir / "train.log").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in log if "loss" in r]
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [step for step, _ in losses] == [1, 2, 3, 4, 5, 6]
    assert [m.value for m in history] == pytest.approx([loss for _, loss in losses])
    assert [m.value for m in evals] == pytest.approx([r["eval_macro_f1"] for r in log if "eval_macro_f1" in r])
    final = found.data.metrics
    assert final["summary.steps"] == 6 and final["summary.train_loss"] == pytest.approx(summary["train_loss"])
    assert final["test.accuracy"] == pytest.approx(metrics["accuracy"])
    assert final["test.macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert final["test.n_test"] == metrics["n_test"]

    top = sorted(f.path for f in client.list_artifacts(run_id))
    assert top == ["MODEL_CARD.md", "eval", "manifest.json", "spec.yaml", "trainer_state.json"]
    assert sorted(f.path for f in client.list_artifacts(run_id, "eval")) == ["eval/metrics.json", "eval/report.html"]
    logged = Path(client.download_artifacts(run_id, "manifest.json", str(tmp_path / "dl")))
    assert json.loads(logged.read_text())["train"]["mlflow"]["run_id"] == run_id
    logged_spec = Path(client.download_artifacts(run_id, "spec.yaml", str(tmp_path / "dl")))
    assert spec_from_dict(yaml.safe_load(logged_spec.read_text())) == spec
    assert not (run.logs_dir / "tensorboard").exists()  # track: [mlflow] only
    assert not (run.logs_dir / "mlflow_run.json").exists()  # the run ended
    assert (store / "artifacts").is_dir()


def test_mlflow_missing_is_named_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from lmforge.errors import MissingExtraError
    from lmforge.rundir import RunDir
    from lmforge.train._track import tracking_callbacks

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(MissingExtraError) as err:
        tracking_callbacks(spec_from_dict({"train": {"track": ["mlflow"]}}), RunDir(tmp_path / "run"), 0)
    assert str(err.value) == ("MLflow tracking (train.track: [mlflow]) needs the Python package 'mlflow', which is "
                              "not installed. Install it with: pip install 'lmforge[mlflow]'")


@pytest.mark.slow
def test_resume_after_a_crash_logs_into_the_same_mlflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from lmforge.train import train
    from lmforge.train._callbacks import JsonlLogCallback

    run = write_prepared(tmp_path / "run")
    spec = spec_from_dict({
        "name": "resume-test", "model": {"max_length": 32},
        "train": {"max_steps": 4, "eval_steps": 2, "logging_steps": 1, "batch_size": 8, "warmup_ratio": 0.0,
                  "early_stopping_patience": None, "track": ["mlflow"]},
    })
    real_on_log = JsonlLogCallback.on_log

    def crash_at_step_3(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == 3:
            raise RuntimeError("simulated crash after the step-2 checkpoint")
        return real_on_log(self, args, state, control, logs=logs, **kwargs)

    monkeypatch.setattr(JsonlLogCallback, "on_log", crash_at_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(spec, run, progress=False)
    active = json.loads((run.logs_dir / "mlflow_run.json").read_text())
    monkeypatch.setattr(JsonlLogCallback, "on_log", real_on_log)
    summary = train(spec, run, resume=True, progress=False)

    client = MlflowClient(tracking_uri=f"sqlite:///{run.logs_dir.resolve()}/mlflow/mlflow.db")
    (found,) = client.search_runs([client.get_experiment_by_name("resume-test").experiment_id])
    assert found.info.run_id == active["run_id"] == summary["mlflow"]["run_id"]
    assert summary["mlflow"]["uri"] is None  # the run's own store, logs/mlflow/
    assert found.info.status == "FINISHED" and summary["resumed_from"] == "checkpoint-2"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "loss")] == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(found.info.run_id, "eval_macro_f1")] == [2, 4]
