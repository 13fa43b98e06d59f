"""The test metrics, report and model card into the MLflow run that training logged (if any).

Training records its MLflow run in ``manifest.train.mlflow`` (``train.track: [mlflow]``); the
evaluate stages call :func:`log_evaluation` last, so one MLflow run holds the spec, the
training curves and the final test scores. Tracking never costs the user an evaluation: when
MLflow is not installed or the store no longer has the run, a warning says so and the
evaluation stands.
"""

from __future__ import annotations

import logging
from typing import Any

from lmforge._mlflow import RUN_STORE, Tracker
from lmforge.errors import MissingExtraError
from lmforge.rundir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["log_evaluation"]


def log_evaluation(run: RunDir, metrics: dict[str, Any]) -> str | None:
    """Log the numbers at the top of ``metrics`` as ``test.*`` and ``eval/metrics.json``,
    ``eval/report.html`` and ``MODEL_CARD.md`` as artifacts; returns the MLflow run id (None
    when the run was not tracked with MLflow, or it could not be logged to)."""
    record = run.read_manifest().get("train", {}).get("mlflow")
    if not isinstance(record, dict):
        return None
    try:
        tracker = Tracker.reopen(record, run.root / RUN_STORE)
    except MissingExtraError as exc:
        logger.warning("Not logged to MLflow: %s", exc)
        return None
    if tracker is None:
        logger.warning("Not logged to MLflow: its store (%s) has no run %s.", record.get("tracking_uri"),
                       record.get("run_id"))
        return None
    tracker.log_metrics({f"test.{key}": value for key, value in metrics.items()}, 0)
    for path in (run.eval_dir / "metrics.json", run.eval_dir / "report.html", run.model_card_path):
        tracker.log_artifact(path, "eval" if path.parent == run.eval_dir else None)
    return tracker.run_id
