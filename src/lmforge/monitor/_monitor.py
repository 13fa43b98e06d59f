"""The :class:`Monitor`: what the serving layer talks to.

The request path only enqueues (:meth:`Monitor.record_many` never blocks and never
raises); one writer thread applies the text policy and inserts batches; a drift thread
scores the recent window against the reference every ``drift_every`` predictions; alert
rules are evaluated after each batch, feedback and drift check.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.monitor._alerts import AlertEngine, WebhookNotifier
from lmforge.monitor._drift import DriftData, DriftResult
from lmforge.monitor._errors import InvalidLabelError, MonitorError, UnknownPredictionError
from lmforge.monitor._live import Recent, Windows, classification_metrics, window_stats
from lmforge.monitor._records import PredictionRecord
from lmforge.monitor._settings import AlertRule, MonitorSettings

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

_STOP = object()


class _ErrorEvent:
    __slots__ = ("model", "status", "ts", "version")

    def __init__(self, model: str, version: str, status: int, ts: float) -> None:
        self.model, self.version, self.status, self.ts = model, version, status, ts


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
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_size)
        self._pending: dict[
            str, tuple[str, str, str, float]
        ] = {}  # id -> (model, version, label, ts) until written
        window = max(settings.drift_window, *settings.windows, *(r.window for r in settings.alerts), 1)
        self._windows = Windows(window)
        self._drift_latest: dict[tuple[str, str], tuple[float, int, list[DriftResult]]] = {}
        self._drift_queue: queue.Queue[Any] = queue.Queue()
        self._drift_started: dict[tuple[str, str], float] = {}
        self._notifier = WebhookNotifier()
        self._alerts = AlertEngine(settings.alerts, self._on_alert)
        self._alert_dirty = threading.Event()
        self._feedback_keys: set[tuple[str, str]] = set()
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self.invalid = 0
        self.errors = 0
        self.store: Any = None
        self.reference: Any = None
        self._policy: Any = None
        self._writer: threading.Thread | None = None
        self._drifter: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._metrics_cache: dict[tuple[str, str, int], tuple[float, dict[str, Any]]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store, load (or fit and cache) the drift reference, start the background threads.

        Raises:
            ConfigError, MissingExtraError, CryptoKeyError, RunDirError: a setting cannot be honoured
                (bad URL, missing extra, no encryption key, no reference run). Raised here, at
                start-up, never later on the request path.
        """
        if self._writer is not None:
            return
        from lmforge.monitor._store import Store
        from lmforge.monitor._text import TextPolicy

        self._policy = TextPolicy(self.settings.text_policy, self.settings.key_file)
        self.store = Store(self.settings.url)
        if self.settings.reference_run:
            self.reference = self._load_reference()
        self._notifier.start()
        self._writer = threading.Thread(target=self._write_loop, name="lmforge-monitor-writer", daemon=True)
        self._writer.start()
        self._drifter = threading.Thread(target=self._drift_loop, name="lmforge-monitor-drift", daemon=True)
        self._drifter.start()
        atexit.register(self.close)  # a normal interpreter exit flushes too

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything recorded before this call is written and its alerts are sent."""
        if self._writer is None or not self._writer.is_alive():
            return
        deadline = time.monotonic() + timeout
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            log.warning("monitor flush: the queue stayed full for %.1f s", timeout)
            return
        if not done.wait(max(deadline - time.monotonic(), 0.0)):
            log.warning("monitor flush timed out after %.1f s", timeout)
            return
        # Then the drift checks those records triggered, and the alerts the checks affect.
        if self._drifter is not None and self._drifter.is_alive():
            checked = threading.Event()
            self._drift_queue.put(checked)
            if not checked.wait(max(deadline - time.monotonic(), 0.0)):
                log.warning("monitor flush timed out after %.1f s waiting for drift checks", timeout)
                return
            if self._alert_dirty.is_set():  # the writer evaluates alerts: send it a marker
                evaluated = threading.Event()
                try:
                    self._queue.put(evaluated, timeout=max(deadline - time.monotonic(), 0.01))
                    evaluated.wait(max(deadline - time.monotonic(), 0.0))
                except queue.Full:
                    pass
        self._notifier.flush(max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        """Write everything still queued, stop the threads, close the store. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        if self._writer is not None:
            try:
                self._queue.put(_STOP, timeout=60)  # the writer is draining: room comes
            except queue.Full:
                log.error("monitor queue stayed full for 60 s at close")
            self._writer.join(60)
            if self._writer.is_alive():
                log.error("monitor writer did not finish within 60 s; some predictions may be lost")
        if self._drifter is not None:
            self._drift_queue.put(_STOP)
            self._drifter.join(60)
        self._notifier.close()
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
        try:
            if self._closed:
                self._count_drops(len(records))
                return
            put = self._queue.put_nowait
            pending = self._pending
            for i, rec in enumerate(records):
                try:
                    # Known before the writer can see it, so feedback can follow at once.
                    pending[rec.id] = (rec.model, rec.version, rec.label, rec.ts)
                except Exception:  # not a PredictionRecord: skip it, keep the others
                    self.invalid += 1
                    continue
                try:
                    put(rec)
                except queue.Full:
                    pending.pop(rec.id, None)
                    self._count_drops(len(records) - i)
                    return
        except Exception:  # the request path must never fail because of monitoring
            log.exception("monitor record_many failed")

    def _count_drops(self, n: int) -> None:
        with self._lock:
            self.dropped += n
            first_or_thousandth = self.dropped == n or self.dropped % 1000 < n
        if first_or_thousandth:  # not every drop: under overload the log would add to the load
            log.warning(
                "monitor queue full or closed (%d waiting): %d predictions dropped so far",
                self.queue_depth,
                self.dropped,
            )

    def record_error(self, model: str = "", version: str = "", status: int = 500) -> None:
        """Count a failed request (for the error rate). Never blocks, never raises."""
        try:
            self._queue.put_nowait(_ErrorEvent(model, version, int(status), time.time()))
        except Exception:
            self._count_drops(1)

    def add_feedback(self, prediction_id: str, label: str) -> dict[str, Any]:
        """Store the true label of a prediction; returns ``{"prediction_id", "label", "correct"}``.

        Raises:
            InvalidLabelError: ``label`` is not one of the model's labels.
            UnknownPredictionError: no prediction has this id.
        """
        if self.store is None:
            raise MonitorError("The monitor is not started; call start() first.")
        if label not in self._label_set:
            raise InvalidLabelError(f"Unknown label {label!r}. Valid labels: {', '.join(self.labels)}.")
        found = self._pending.get(prediction_id)
        if found is None and isinstance(prediction_id, str) and len(prediction_id) <= 64:
            row = self.store.get_prediction(prediction_id)
            if row is not None:
                found = (row["model"], row["version"], row["label"], row["ts"])
        if found is None:
            raise UnknownPredictionError(
                f"No prediction with id {prediction_id!r} (ids come from the predict "
                "response; predictions dropped under overload are not stored)."
            )
        model, version, predicted, pred_ts = found
        correct = predicted == label
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
            }
        )
        self._feedback_keys.add((model, version))
        self._metrics_cache.clear()
        self._alert_dirty.set()
        return {"prediction_id": prediction_id, "label": label, "correct": correct}

    # -- metrics ---------------------------------------------------------------------------
    def live_metrics(self, model: str, version: str, window: int = 100) -> dict[str, Any]:
        """Accuracy and macro-F1 of the last ``window`` predictions of a version that got feedback.

        Returns ``{"n", "accuracy", "macro_f1"}``; both are None when ``n`` is 0.
        """
        if self.store is None:
            return classification_metrics([])
        return classification_metrics(self.store.labeled(model, version, window))

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
        return self._drift_latest.get((model, version))

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

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
            latest = self._drift_latest.get((model, version))
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

    # -- HTTP, Prometheus, views -----------------------------------------------------------
    def router(self, require_predict: Callable[..., Any], require_admin: Callable[..., Any]) -> Any:
        """FastAPI router: ``POST /v1/feedback``, ``GET /v1/monitor/summary``, ``GET /dashboard``."""
        from lmforge.monitor._http import build_router

        return build_router(self, require_predict, require_admin)

    def collector(self) -> Any:
        """A ``prometheus_client`` collector of this monitor's metrics (register it on a registry)."""
        from lmforge.monitor._prometheus import MonitorCollector

        return MonitorCollector(self)

    def summary(self) -> dict[str, Any]:
        """Everything at a glance, as JSON-able data (what ``GET /v1/monitor/summary`` returns)."""
        from lmforge.monitor._views import summary

        return summary(self)

    def dashboard_html(
        self, minutes: float = 60.0, model: str | None = None, version: str | None = None
    ) -> str:
        """The self-contained dashboard page."""
        from lmforge.monitor._dashboard import render_dashboard
        from lmforge.monitor._views import dashboard_data

        return render_dashboard(dashboard_data(self, minutes, model, version))

    # -- reference -------------------------------------------------------------------------
    def _reference_path(self, fingerprint: str) -> Path:
        if self.settings.reference_state:
            return Path(self.settings.reference_state)
        db = getattr(self.store.engine.url, "database", None) or ""
        base = (
            Path(db).expanduser().parent
            if self.store.engine.dialect.name == "sqlite" and db and db != ":memory:"
            else Path(".lmforge")
        )
        return base / f"reference-{fingerprint[:16]}.json"

    def _load_reference(self) -> Any:
        from lmforge.monitor._reference import ReferenceState, fit_reference, reference_fingerprint
        from lmforge.rundir import RunDir

        s = self.settings
        RunDir(s.reference_run).require(
            "data/train.jsonl", hint="monitor reference_run must be a trained run."
        )
        fingerprint = reference_fingerprint(
            s.reference_run, s.detectors, s.detector_options, s.reference_size
        )
        path = self._reference_path(fingerprint)
        if path.is_file():
            try:
                state = ReferenceState.load(path)
                if state.meta.get("fingerprint") == fingerprint:
                    log.info("drift reference loaded from %s", path)
                    return state
            except Exception as exc:  # a damaged cache is rebuilt, not fatal
                log.warning("drift reference cache %s unreadable (%s); fitting again", path, exc)
        state = fit_reference(s.reference_run, s.detectors, s.detector_options, s.reference_size)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            state.save(path)
        except OSError as exc:
            log.warning("could not cache the drift reference at %s: %s", path, exc)
        return state

    # -- writer thread ---------------------------------------------------------------------
    def _take_batch(self) -> list[Any]:
        try:
            first = self._queue.get(timeout=0.25)
        except queue.Empty:
            return []
        batch = [first]
        if first is _STOP or isinstance(first, threading.Event):
            return batch
        deadline = time.monotonic() + self.settings.flush_interval_s
        while len(batch) < self.settings.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.25))
                except queue.Empty:
                    continue
            batch.append(item)
            if item is _STOP or isinstance(item, threading.Event):
                break
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._take_batch()
            try:
                stop = self._process(batch)
            except Exception:  # the writer must outlive any one bad batch
                log.exception("monitor writer: batch failed")
                stop = any(item is _STOP for item in batch)
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
            if self._alert_dirty.is_set():
                self._alert_dirty.clear()
                self._evaluate_alerts()
            if stop:
                return

    def _process(self, batch: list[Any]) -> bool:
        rows, errors, markers, recent = [], [], [], []
        stop = False
        for item in batch:
            if item is _STOP:
                stop = True
            elif isinstance(item, threading.Event):
                markers.append(item)
            elif isinstance(item, _ErrorEvent):
                errors.append(
                    {"ts": item.ts, "model": item.model, "version": item.version, "status": item.status}
                )
            else:
                try:
                    rows.append(self._row(item))
                    recent.append(item)
                except Exception as exc:  # one malformed record must not sink the batch
                    self.invalid += 1
                    self._pending.pop(getattr(item, "id", None), None)
                    log.warning("monitor: invalid prediction record dropped (%s)", exc)
        if rows:
            self._insert_with_retry(rows)
        if errors:
            self.store.insert("errors", errors)
            self.errors += len(errors)
            for _ in errors:
                self._windows.add_error()
        for rec in recent:
            self._pending.pop(rec.id, None)
            win = self._windows.add(
                rec.model,
                rec.version,
                Recent(
                    rec.ts,
                    rec.label,
                    float(rec.confidence),
                    float(rec.latency_ms),
                    rec.text,
                    dict(rec.scores),
                ),
            )
            if self.reference is not None and win.since_drift >= self.settings.drift_every:
                key = (rec.model, rec.version)
                now = time.monotonic()
                if now - self._drift_started.get(key, -math.inf) >= self.settings.drift_min_interval_s:
                    self._drift_started[key] = now
                    win.since_drift = 0
                    self._drift_queue.put(key)
        if rows or errors:
            self._metrics_cache.clear()
            self._alert_dirty.set()
        for marker in markers:
            if self._alert_dirty.is_set():  # a flush also covers the alerts of what it flushed
                self._alert_dirty.clear()
                self._evaluate_alerts()
            marker.set()
        return stop

    def _row(self, rec: PredictionRecord) -> dict[str, Any]:
        text_hash, stored = self._policy.apply(str(rec.text))
        confidence, latency = float(rec.confidence), float(rec.latency_ms)
        if not (math.isfinite(confidence) and math.isfinite(latency)):
            raise ValueError(f"non-finite confidence or latency in prediction {rec.id!r}")
        return {
            "id": str(rec.id)[:64],
            "ts": float(rec.ts),
            "model": str(rec.model),
            "version": str(rec.version),
            "text_hash": text_hash,
            "text": stored,
            "text_policy": self._policy.policy,
            "label": str(rec.label),
            "confidence": confidence,
            "scores": {str(k): float(v) for k, v in dict(rec.scores).items()},
            "latency_ms": latency,
        }

    def _insert_with_retry(self, rows: list[dict[str, Any]]) -> None:
        for attempt in range(3):
            try:
                self.store.insert_predictions(rows)
                self.written += len(rows)
                return
            except Exception as exc:  # the database can be locked or away for a moment
                if attempt == 2:
                    self.failed += len(rows)
                    log.error(
                        "monitor: %d predictions lost after 3 attempts to store them: %s", len(rows), exc
                    )
                    for row in rows:
                        self._pending.pop(row["id"], None)
                    return
                time.sleep(0.2 * (attempt + 1))

    # -- drift thread ----------------------------------------------------------------------
    def _drift_loop(self) -> None:
        while True:
            key = self._drift_queue.get()
            if key is _STOP:
                return
            if isinstance(key, threading.Event):
                key.set()
                continue
            try:
                self.check_drift(*key)
            except Exception:
                log.exception("monitor: drift check of %s failed", key)

    def check_drift(self, model: str, version: str) -> list[DriftResult]:
        """Score the recent window of a version against the reference now (also run every ``drift_every``)."""
        if self.reference is None:
            return []
        items = self._windows.snapshot(model, version, self.settings.drift_window)
        if not items:
            return []
        proba = np.array(
            [[r.scores.get(label, 0.0) for label in self.labels] for r in items], dtype=np.float64
        )
        data = DriftData([r.text for r in items], proba, list(self.labels))
        results = self.reference.score(data)
        now = time.time()
        self._drift_latest[(model, version)] = (now, len(items), results)
        self.store.insert(
            "drift",
            [
                {
                    "ts": now,
                    "model": model,
                    "version": version,
                    "detector": r.name,
                    "statistic": _finite(r.statistic),
                    "p_value": _finite(r.p_value),
                    "threshold": _finite(r.threshold),
                    "drift": r.drift,
                    "n": len(items),
                    "reason": r.reason,
                    "detail": r.detail,
                }
                for r in results
            ],
        )
        flagged = [r.name for r in results if r.drift]
        if flagged:
            log.info("drift in %s %s over %d predictions: %s", model, version, len(items), ", ".join(flagged))
        self._alert_dirty.set()
        return results

    # -- alerts ----------------------------------------------------------------------------
    def _evaluate_alerts(self) -> None:
        for index, rule in enumerate(self.settings.alerts):
            keys = [("*", "*")] if rule.metric in ("dropped", "error_rate") else self.versions()
            for model, version in keys:
                try:
                    value = self.metric_value(rule.metric, model, version, rule.window, rule.min_samples)
                    self._alerts.update(index, model, version, value)
                except Exception:
                    log.exception("monitor: alert rule %s failed", rule.name)

    def _on_alert(self, event: dict[str, Any], rule: AlertRule) -> None:
        self._notifier.submit(event, rule)
        try:
            self.store.insert(
                "alerts",
                [
                    {
                        "ts": event["ts"],
                        "rule": event["rule"],
                        "metric": event["metric"],
                        "status": event["status"],
                        "value": event["value"],
                        "threshold": event["threshold"],
                        "model": event["model"],
                        "version": event["version"],
                    }
                ],
            )
        except Exception:
            log.exception("monitor: could not store alert event")

    def active_alerts(self) -> list[dict[str, Any]]:
        return self._alerts.active()

    @property
    def notifier(self) -> WebhookNotifier:
        return self._notifier


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)
