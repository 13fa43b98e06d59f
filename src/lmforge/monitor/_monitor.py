"""The :class:`Monitor`: what the serving layer talks to.

The request path only enqueues (:meth:`Monitor.record_many` never blocks and never
raises); a writer process applies the text policy, inserts batches and scores the recent
window against the drift reference every ``drift_every`` predictions, off this process's GIL
and at a lower CPU priority (``_writer``, ``_writer_process``, ``_drift_process``); alert rules
are evaluated after each batch, feedback and drift check (``_alert_wiring``). The Monitor composes
the three, takes feedback and computes live metrics.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable, Sequence
from typing import Any

from lmforge.monitor._alert_wiring import AlertWiring
from lmforge.monitor._alerts import WebhookNotifier
from lmforge.monitor._dashboard import render_dashboard
from lmforge.monitor._drift import DriftResult
from lmforge.monitor._drift_runner import DriftRunner
from lmforge.monitor._errors import (
    FeedbackConflictError,
    FeedbackForbiddenError,
    InvalidLabelError,
    MonitorError,
    UnknownPredictionError,
)
from lmforge.monitor._live import Windows, classification_metrics, window_stats
from lmforge.monitor._records import PredictionRecord
from lmforge.monitor._settings import MonitorSettings
from lmforge.monitor._store import Store
from lmforge.monitor._text_policy import TextPolicy
from lmforge.monitor._views import dashboard_data
from lmforge.monitor._views import summary as summary_of
from lmforge.monitor._writer import StoreWriter

__all__ = ["CORRECTED", "GENERATION_FEEDBACK", "Monitor"]

CORRECTED = "corrected"
"""The label of feedback that brings a corrected answer to a generation."""
GENERATION_FEEDBACK = ("up", "down", CORRECTED)
"""The labels a generated answer takes: thumbs up, thumbs down, or a correction."""


class Monitor:
    """Prediction store, feedback, live accuracy, drift, alerts and metrics of a served model.

    Args:
        settings: where to store and what to compute.
        labels: the model's labels (feedback must use one of them; drift reads scores in this order).
    """

    def __init__(self, settings: MonitorSettings, labels: Sequence[str]) -> None:
        self.settings = settings
        self.labels = list(labels)
        self._label_set = set(self.labels)
        self.dashboard_sections: list[Callable[[float], str]] = []  # an app's own cards (the bot's outcomes)
        window = max(settings.drift_window, *settings.windows, *(r.window for r in settings.alerts), 1)
        self._windows = Windows(window)
        self._feedback_keys: set[tuple[str, str]] = set()
        self._metrics_cache: dict[tuple[str, str, int], tuple[float, dict[str, Any]]] = {}
        self.store: Any = None
        self._policy: TextPolicy | None = None
        self._alerts = AlertWiring(settings.alerts, self.metric_value, self.versions)
        self._drift = DriftRunner(settings, self.labels, self._windows, on_checked=self._alerts.mark)
        self._writer = StoreWriter(
            settings,
            self._windows,
            labels=self.labels,
            on_drift=self._drift.checked_elsewhere,
            on_change=self._changed,
            evaluate_alerts=self._alerts.evaluate_if_marked,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store, load (or fit and cache) the drift reference, start the background threads.

        Raises:
            ConfigError, MissingExtraError, CryptoKeyError, RunDirError: a setting cannot be honoured
                (bad URL, missing extra, no encryption key, no reference run). Raised here, at
                start-up, never later on the request path.
        """
        if self._writer.started:
            return
        self._policy = TextPolicy(self.settings.text_policy, self.settings.key_file)
        self.store = Store(self.settings.url)  # creates the tables before the writer process opens them
        self._writer.spawn(self._policy)  # its imports overlap the reference's loading
        try:
            if self.settings.reference_run:
                self.reference = self._drift.load_reference(self.store, self.settings.reference_run)
            self._writer.start(self.store, self._policy)  # waits until it opened the store
        except BaseException:
            self._writer.abort()
            raise
        self._alerts.start(self.store)
        self._drift.start(self.store)
        atexit.register(self.close)  # a normal interpreter exit flushes too

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything recorded before this call is written and its alerts are sent."""
        if not self._writer.running:
            return
        deadline = time.monotonic() + timeout
        if not self._writer.flush(timeout, deadline):
            return
        # Then the drift checks those records triggered, and the alerts the checks affect.
        if self._drift.running:
            if not self._drift.flush(timeout, deadline):
                return
            if self._alerts.marked:  # the writer evaluates alerts: send it a marker
                self._writer.flush(timeout, deadline)
        self.notifier.flush(max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        """Write everything still queued, stop the threads, close the store. Idempotent."""
        if not self._writer.shut():
            return
        atexit.unregister(self.close)
        self._writer.stop()
        self._drift.stop()
        self._alerts.close()
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request path ----------------------------------------------------------------------
    def record_many(self, records: Sequence[PredictionRecord]) -> None:
        """Queue predictions for the store. Never blocks, never raises; a full queue drops and counts."""
        self._writer.record_many(records)

    def record_error(self, model: str = "", version: str = "", status: int = 500) -> None:
        """Count a failed request (for the error rate). Never blocks, never raises."""
        self._writer.record_error(model, version, status)

    def add_feedback(
        self, prediction_id: str, label: str, *, key_id: str | None = None, admin: bool = False,
        correction: str | None = None,
    ) -> dict[str, Any]:
        """Store the true label of a prediction; returns ``{"prediction_id", "label", "correct"}``.

        A generated answer takes ``up``/``down``, or a ``correction`` (label ``corrected``; stored under
        the text policy); stored as if ``up`` was predicted, its live accuracy is the thumbs-up share.

        Feedback cannot be used to steer a rollout: a prediction is labeled by the key that asked
        for it (``key_id``; predictions recorded without a key may be labeled by any key), and a
        label, once given, is final: the same label again is an idempotent retry, another one
        needs ``admin`` (an override, recorded under the admin's key).

        Raises:
            InvalidLabelError: ``label`` is not one of the model's labels.
            UnknownPredictionError: no prediction has this id.
            FeedbackForbiddenError: the prediction was made for another key, and this is no admin.
            FeedbackConflictError: it already has another label, and this is no admin.
        """
        if self.store is None:
            raise MonitorError("The monitor is not started; call start() first.")
        if correction is not None:
            label = CORRECTED
        elif label == CORRECTED and label not in self._label_set:
            raise InvalidLabelError("Send a corrected answer as 'correction' (its text), not as a label.")
        if label not in self._label_set and label not in GENERATION_FEEDBACK:
            valid = ", ".join(self.labels) or "up, down, or a correction"
            raise InvalidLabelError(f"Unknown label {label!r}. Valid labels: {valid}.")
        found = self._writer.pending.get(prediction_id)
        if found is None and isinstance(prediction_id, str) and len(prediction_id) <= 64:
            row = self.store.get_prediction(prediction_id)
            if row is not None:
                found = (row["model"], row["version"], row["label"], row["ts"], row["key_id"],
                         row["completion_tokens"] is not None)
        if found is None:
            raise UnknownPredictionError(
                f"No prediction with id {prediction_id!r} (ids come from the predict "
                "response; predictions dropped under overload are not stored)."
            )
        model, version, predicted, pred_ts, asked_by, generated = found
        if generated != (label in GENERATION_FEEDBACK and label not in self._label_set):
            valid = "up, down, or a correction" if generated else ", ".join(self.labels)
            raise InvalidLabelError(f"Unknown label {label!r} for this prediction. Valid labels: {valid}.")
        predicted = "up" if generated else predicted
        correct = predicted == label
        if not admin and asked_by is not None and key_id != asked_by:
            raise FeedbackForbiddenError(
                f"Prediction {prediction_id!r} was made for another API key; only that key, or an admin, "
                "may label it."
            )
        previous = self.store.get_feedback(prediction_id)
        if previous is not None and not admin:
            if previous["label"] == label:
                return {"prediction_id": prediction_id, "label": label, "correct": correct}
            raise FeedbackConflictError(
                f"Prediction {prediction_id!r} already has the label {previous['label']!r}; a label is final "
                "unless an admin key overrides it."
            )
        self.store.upsert_feedback(
            {
                "prediction_id": prediction_id,
                "ts": time.time(),
                "label": label,
                "predicted": predicted,
                "correct": correct,
                "model": model,
                "version": version,
                "prediction_ts": pred_ts,
                "key_id": key_id,
                "correction": None if correction is None else self._correction_policy().apply(correction)[1],
            }
        )
        self._feedback_keys.add((model, version))
        self._changed()
        self._writer.nudge()  # the rules run on the writer's thread: even if no prediction follows
        return {"prediction_id": prediction_id, "label": label, "correct": correct}

    def _correction_policy(self) -> TextPolicy:
        """The text policy, in this process: corrections are written by the request that brings them."""
        if self._policy is None:
            self._policy = TextPolicy(self.settings.text_policy, self.settings.key_file)
        return self._policy

    def _changed(self) -> None:
        """Stored predictions, errors or feedback changed: cached metrics are stale, alerts are due."""
        self._metrics_cache.clear()
        self._alerts.mark()

    # -- counters --------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Predictions dropped because the queue was full or the monitor closed."""
        return self._writer.dropped

    @property
    def written(self) -> int:
        """Predictions written to the store."""
        return self._writer.written

    @property
    def failed(self) -> int:
        """Predictions lost because the store kept failing."""
        return self._writer.failed

    @property
    def pruned(self) -> int:
        """Old predictions deleted by retention (``retention_days``, ``max_rows``)."""
        return self._writer.pruned

    @property
    def invalid(self) -> int:
        """Records that were not valid predictions (skipped)."""
        return self._writer.invalid

    @property
    def errors(self) -> int:
        """Failed requests recorded."""
        return self._writer.errors

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth

    @property
    def writer_restarts(self) -> int:
        """Times the store-writer process died and was started again."""
        return self._writer.restarts

    @property
    def writer_pid(self) -> int | None:
        """Process id of the store writer (None before start)."""
        return self._writer.pid

    # -- metrics ---------------------------------------------------------------------------
    def live_metrics(self, model: str, version: str, window: int = 100) -> dict[str, Any]:
        """Accuracy and macro-F1 of the last ``window`` predictions of a version that got feedback.

        Returns ``{"n", "accuracy", "macro_f1"}``; both are None when ``n`` is 0.
        """
        if self.store is None:
            return classification_metrics([])
        return classification_metrics(self.store.labeled(model, version, window))

    def feedback_keys(self, model: str, version: str, window: int = 100) -> int:
        """How many distinct API keys gave the last ``window`` feedback labels of a version."""
        return 0 if self.store is None else self.store.feedback_keys(model, version, window)

    def cached_live_metrics(self, model: str, version: str, window: int, ttl: float = 2.0) -> dict[str, Any]:
        """:meth:`live_metrics`, reused for ``ttl`` seconds (scrapes and dashboards poll often)."""
        key = (model, version, window)
        hit = self._metrics_cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = self.live_metrics(model, version, window)
        self._metrics_cache[key] = (now, value)
        return value

    def versions(self) -> list[tuple[str, str]]:
        """Model versions seen since start (predictions or feedback)."""
        return sorted(set(self._windows.keys()) | self._feedback_keys)

    def label_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Predictions per label per model version since start."""
        return self._windows.counters()

    def window_stats(self, model: str, version: str, window: int) -> dict[str, Any]:
        return window_stats(self._windows.snapshot(model, version, window))

    def drift_latest(self, model: str, version: str) -> tuple[float, int, list[DriftResult]] | None:
        """``(ts, n, results)`` of the latest drift check of a version, or None."""
        return self._drift.latest.get((model, version))

    def metric_value(
        self, metric: str, model: str, version: str, window: int, min_samples: int
    ) -> float | None:
        """Current value of an alert metric (None: not enough data)."""
        if metric in ("accuracy", "macro_f1"):
            m = self.live_metrics(model, version, window)
            return m[metric] if m["n"] >= min_samples else None
        if metric == "dropped":
            return float(self.dropped)
        if metric == "error_rate":
            rate, n = self._windows.error_rate(window)
            return rate if n >= min_samples else None
        if metric in ("estimated_accuracy", "drifted") or metric.startswith("drift:"):
            latest = self.drift_latest(model, version)
            if latest is None:
                return None
            results = {r.name: r for r in latest[2]}
            if metric == "drifted":
                return float(sum(r.drift is True for r in results.values()))
            r = results.get(
                "accuracy-estimate" if metric == "estimated_accuracy" else metric.split(":", 1)[1]
            )
            return None if r is None or r.statistic is None else float(r.statistic)
        stats = self.window_stats(model, version, window)
        if stats["n"] < min_samples:
            return None
        if metric.startswith("label_share:"):
            return float(stats["label_share"].get(metric.split(":", 1)[1], 0.0))
        value = stats.get(metric)
        return None if value is None else float(value)

    # -- drift -----------------------------------------------------------------------------
    @property
    def reference(self) -> Any:
        """The fitted drift reference (a :class:`ReferenceState`), None: no drift checks."""
        return self._drift.reference

    @reference.setter
    def reference(self, state: Any) -> None:
        self._drift.reference = state
        self._writer.set_reference(None if state is None else state.to_json())  # its checks run there

    def check_drift(self, model: str, version: str) -> list[DriftResult]:
        """Score the recent window of a version against the reference now (also run every ``drift_every``)."""
        return self._drift.check(model, version)

    # -- alerts ----------------------------------------------------------------------------
    def active_alerts(self) -> list[dict[str, Any]]:
        return self._alerts.active()

    @property
    def notifier(self) -> WebhookNotifier:
        return self._alerts.notifier

    # -- HTTP, Prometheus, views -----------------------------------------------------------
    def router(
        self,
        require_predict: Callable[..., Any],
        require_admin: Callable[..., Any],
        require_feedback: Callable[..., Any] | None = None,
    ) -> Any:
        """FastAPI router: ``POST /v1/feedback``, ``GET /v1/monitor/summary``, ``GET /dashboard``.

        ``require_feedback`` checks the key of a feedback request (default: ``require_predict``).
        """
        from lmforge.monitor._http import build_router  # FastAPI: the serve extra

        return build_router(self, require_predict, require_admin, require_feedback)

    def collector(self) -> Any:
        """A ``prometheus_client`` collector of this monitor's metrics (register it on a registry)."""
        from lmforge.monitor._prometheus import MonitorCollector  # prometheus-client: the serve extra

        return MonitorCollector(self)

    def summary(self) -> dict[str, Any]:
        """Everything at a glance, as JSON-able data (what ``GET /v1/monitor/summary`` returns)."""
        return summary_of(self)

    def dashboard_html(self, minutes: float = 60.0, model: str | None = None, version: str | None = None) -> str:
        """The self-contained dashboard page, with the ``dashboard_sections`` an app added (each: HTML of a window)."""
        extra = "".join(section(minutes) for section in self.dashboard_sections)
        return render_dashboard(dashboard_data(self, minutes, model, version), extra=extra)
