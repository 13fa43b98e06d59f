"""One MLflow run in a local store: where the store is, and the few calls lmforge makes on it.

No server: the store is a SQLite file (``sqlite:///.../mlflow.db``) with its artifacts in an
``artifacts/`` folder beside it. MLflow 3 keeps its file store (``./mlruns``) in maintenance
mode and refuses to open one unless ``MLFLOW_ALLOW_FILE_STORE`` is set, so lmforge uses SQLite,
which that version supports fully; a ``file:`` URI is refused with that reason
(:func:`uri_problem`, which the spec's ``train.mlflow_uri`` check calls).

Everything goes through an explicit ``MlflowClient``: MLflow's fluent API keeps its tracking
URI and active run in process-wide state, which two runs in one process (tests, ``lmforge
tune``) would share. MLflow itself is imported only here, inside :meth:`Tracker.open`, through
:func:`lmforge._extras.require` (the ``mlflow`` extra, which installs ``mlflow-skinny``).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge._extras import require

__all__ = ["RUN_STORE", "Tracker", "store_location", "uri_problem"]

RUN_STORE = "logs/mlflow"
"""A run's own store, relative to its run directory (under ``logs/``: never hashed, never loaded)."""
DB_FILE = "mlflow.db"
ARTIFACTS = "artifacts"
_SQLITE = "sqlite:///"
_PER_BATCH = 100  # MLflow's limit of params (and tags) per log_batch call
_MAX_PARAM = 6000  # MLflow's longest param value


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be ``train.mlflow_uri``, or None when it can.

    Accepted: a ``sqlite:///`` URI (``sqlite:////abs/path.db`` is absolute) or a plain folder
    path, which holds ``mlflow.db`` and ``artifacts/``.
    """
    if uri.startswith(_SQLITE):
        return None if uri[len(_SQLITE):].strip() else f"train.mlflow_uri {uri!r} names no database file."
    if uri.startswith("file:"):
        return (f"train.mlflow_uri {uri!r} is an MLflow file store, which MLflow 3 no longer opens by default. "
                f"Use a folder path (it holds {DB_FILE} and {ARTIFACTS}/) or a sqlite:/// URI.")
    if "://" in uri or uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return (f"train.mlflow_uri {uri!r} is not a local store: lmforge logs to a local SQLite store, no server. "
                f"Use a folder path or a sqlite:/// URI.")
    return None


def store_location(uri: str | None, default_folder: Path) -> tuple[str, Path]:
    """The tracking URI and the artifact folder for the ``train.mlflow_uri`` setting.

    None: ``default_folder/mlflow.db`` (the run's own store). A folder path: ``mlflow.db``
    inside it. A ``sqlite:///`` URI: that database, its artifacts in ``artifacts/`` beside it.
    """
    if uri is not None and uri.startswith(_SQLITE):
        db = Path(uri[len(_SQLITE):])
        return uri, db.parent.resolve() / ARTIFACTS
    folder = (Path(uri).expanduser() if uri is not None else default_folder).resolve()
    return f"{_SQLITE}{folder / DB_FILE}", folder / ARTIFACTS


def _client(tracking_uri: str) -> Any:
    tracking = require("mlflow.tracking", extra="mlflow", purpose="MLflow tracking (train.track: [mlflow])")
    return tracking.MlflowClient(tracking_uri=tracking_uri)


def _find_run(client: Any, run_id: str) -> Any:
    """The run ``run_id`` in the client's store, or None."""
    exceptions = require("mlflow.exceptions", extra="mlflow", purpose="MLflow tracking")
    try:
        return client.get_run(run_id)
    except exceptions.MlflowException:
        return None


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number (bools and NaN included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class Tracker:
    """An open MLflow run: ``client`` on the store at ``tracking_uri``, logging into ``run_id``."""

    client: Any
    tracking_uri: str
    experiment_id: str
    run_id: str

    @classmethod
    def open(cls, tracking_uri: str, artifacts: Path, *, experiment: str, run_name: str,
             run_id: str | None = None) -> Tracker:
        """Open the store (created on first use), the experiment (created with its artifacts
        under ``artifacts``) and a new run, or go on with the run ``run_id`` when the store has it."""
        client = _client(tracking_uri)
        if run_id is not None and (found := _find_run(client, run_id)) is not None:
            client.update_run(run_id, status="RUNNING")
            return cls(client, tracking_uri, found.info.experiment_id, run_id)
        existing = client.get_experiment_by_name(experiment)
        if existing is not None:
            experiment_id = existing.experiment_id
        else:
            artifacts.mkdir(parents=True, exist_ok=True)
            experiment_id = client.create_experiment(experiment, artifact_location=artifacts.as_uri())
        run = client.create_run(experiment_id, run_name=run_name)
        return cls(client, tracking_uri, experiment_id, run.info.run_id)

    @classmethod
    def reopen(cls, record: dict[str, Any], default_folder: Path) -> Tracker | None:
        """The run a :meth:`record` names, or None when its store no longer has it. A run in its
        own store (``uri`` None) is looked up in ``default_folder``, so a copied run finds it."""
        uri, _ = store_location(record.get("uri"), default_folder)
        run_id = record.get("run_id")
        if not isinstance(run_id, str):
            return None
        client = _client(uri)
        found = _find_run(client, run_id)
        return None if found is None else cls(client, uri, found.info.experiment_id, run_id)

    def record(self, uri_setting: str | None) -> dict[str, Any]:
        """What the manifest keeps to find this run again (``uri`` None: the run's own store)."""
        return {"uri": uri_setting, "tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id,
                "run_id": self.run_id}

    def log_params(self, params: dict[str, Any]) -> None:
        """Log ``params`` as strings (values cut to MLflow's 6,000 characters), 100 per call."""
        entities = require("mlflow.entities", extra="mlflow", purpose="MLflow tracking")
        items = [entities.Param(key, str(value)[:_MAX_PARAM]) for key, value in sorted(params.items())]
        for start in range(0, len(items), _PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + _PER_BATCH])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> int:
        """Log the finite numbers of ``metrics`` at ``step`` (anything else is skipped); returns how many."""
        entities = require("mlflow.entities", extra="mlflow", purpose="MLflow tracking")
        values = {key: _number(value) for key, value in metrics.items()}
        timestamp = int(time.time() * 1000)
        items = [entities.Metric(key, value, timestamp, step) for key, value in values.items() if value is not None]
        if items:
            self.client.log_batch(self.run_id, metrics=items)
        return len(items)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Copy the file ``path`` into the run's artifacts (under ``folder``), when it exists."""
        if path.is_file():
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        """Write ``text`` as the artifact file ``name``."""
        self.client.log_text(self.run_id, text, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


