"""Experiment tracking while training (``train.track``): TensorBoard and MLflow.

TensorBoard is transformers' own callback writing ``logs/tensorboard/``. MLflow is
:class:`MlflowCallback`: the flattened spec as params when training begins, every Trainer log
record (train loss, learning rate, each evaluation's validation scores) as metrics at its step,
and, once ``model/`` and the manifest are written (:func:`finish_tracking`, from the stage's
``_finish``), the training summary as ``summary.*`` metrics and the manifest, spec and trainer
state as artifacts. The run's id goes into ``manifest.train.mlflow``, where the evaluate stage
finds it to add the test metrics, the report and the model card to the same MLflow run.

Only rank 0 tracks. The active MLflow run is noted in ``logs/mlflow_run.json`` when it starts,
so ``train --resume`` goes on logging into the same run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from transformers import TrainerCallback

from lmforge._extras import require
from lmforge._mlflow import RUN_STORE, Tracker, store_location
from lmforge.config import Spec, spec_to_dict, spec_to_yaml
from lmforge.rundir import RunDir, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["MlflowCallback", "finish_tracking", "flatten", "tracking_callbacks"]

ACTIVE = "mlflow_run.json"  # under logs/: the MLflow run this training logs into


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys (``{"train": {"lora": {"r": 8}}}`` -> ``train.lora.r``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


class MlflowCallback(TrainerCallback):
    """Logs one training run to MLflow (see the module docstring for what goes where)."""

    def __init__(self, spec: Spec, run: RunDir) -> None:
        self.spec = spec
        self.run = run
        self.tracker: Tracker | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        uri, artifacts = store_location(self.spec.train.mlflow_uri, self.run.root / RUN_STORE)
        active = self.run.logs_dir / ACTIVE
        previous = json.loads(active.read_text(encoding="utf-8")).get("run_id") if active.is_file() else None
        self.tracker = Tracker.open(uri, artifacts, experiment=self.spec.name, run_name=self.run.root.name,
                                    run_id=previous)
        atomic_write_json(active, self.tracker.record(self.spec.train.mlflow_uri))
        if self.tracker.run_id != previous:
            self.tracker.log_params(flatten(spec_to_dict(self.spec)))
            self.tracker.set_tags({"lmforge.run_dir": str(self.run.root),
                                   "lmforge.task": str(self.spec.task or "classify")})
        logger.info("MLflow: run %s in %s", self.tracker.run_id, uri)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.tracker is not None and logs:
            self.tracker.log_metrics({key: value for key, value in logs.items() if key != "epoch"},
                                     int(state.global_step))

    def finish(self, summary: dict[str, Any]) -> None:
        """Record the run in the manifest (``train.mlflow``), log the summary as ``summary.*``
        metrics and the manifest, spec and trainer state as artifacts, and end the run."""
        if self.tracker is None:  # pragma: no cover - the Trainer always calls on_train_begin
            raise RuntimeError("MlflowCallback.finish before training began")
        tracker = self.tracker
        summary["mlflow"] = tracker.record(self.spec.train.mlflow_uri)
        self.run.update_manifest(train=summary)
        tracker.log_metrics({f"summary.{key}": value for key, value in summary.items()}, int(summary.get("steps", 0)))
        tracker.log_text(spec_to_yaml(self.spec), "spec.yaml")  # the spec this training ran with
        for path in (self.run.manifest_path, self.run.logs_dir / "trainer_state.json",
                     self.run.data_dir / "data_report.json"):
            tracker.log_artifact(path)
        tracker.end()
        (self.run.logs_dir / ACTIVE).unlink(missing_ok=True)


def tracking_callbacks(spec: Spec, run: RunDir, rank: int) -> tuple[list[Any], Any]:
    """The callbacks of the trackers ``spec.train.track`` names (rank 0 only) and the
    TensorBoard writer that the stage closes after training (None without TensorBoard)."""
    if rank != 0:
        return [], None
    transformers = require("transformers", extra="train", purpose="Training")
    callbacks: list[Any] = []
    writer = None
    if "tensorboard" in spec.train.track:
        tb = require("torch.utils.tensorboard", extra="train", purpose="TensorBoard logging")
        writer = tb.SummaryWriter(log_dir=str(run.logs_dir / "tensorboard"))
        callbacks.append(transformers.integrations.TensorBoardCallback(tb_writer=writer))
    if "mlflow" in spec.train.track:
        require("mlflow", extra="mlflow", purpose="MLflow tracking (train.track: [mlflow])")  # before training
        callbacks.append(MlflowCallback(spec, run))
    return callbacks, writer


def finish_tracking(trainer: Any, summary: dict[str, Any]) -> None:
    """After ``model/`` and the manifest are written: finish the MLflow run, if one is tracked."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, MlflowCallback):
            callback.finish(summary)
