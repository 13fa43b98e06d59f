"""Prometheus collector of the monitor: read at scrape time from the live state (no metric objects to update)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lmforge.monitor._protocol import MonitorLike

__all__ = ["MonitorCollector"]


class MonitorCollector(Collector):
    """``lmforge_monitor_*`` metrics: predictions per label, drift, live and estimated accuracy, store queue."""

    def __init__(self, monitor: MonitorLike) -> None:
        self.monitor = monitor

    def describe(self) -> list[Any]:
        # Names only, so registering does not run a scrape (and its database queries).
        return list(self._families())

    def _families(self) -> tuple[Any, ...]:
        mv = ["model", "version"]
        return (
            CounterMetricFamily(
                "lmforge_monitor_predictions",
                "Predictions recorded since start, by label.",
                labels=[*mv, "label"],
            ),
            GaugeMetricFamily(
                "lmforge_monitor_drift_score",
                "Statistic of each drift detector at the latest check.",
                labels=[*mv, "detector"],
            ),
            GaugeMetricFamily(
                "lmforge_monitor_drift_detected",
                "1 when the detector flagged drift at the latest "
                "check, 0 when it did not (absent: no verdict).",
                labels=[*mv, "detector"],
            ),
            GaugeMetricFamily(
                "lmforge_monitor_live_accuracy",
                "Accuracy over the last N predictions with feedback.",
                labels=[*mv, "window"],
            ),
            GaugeMetricFamily(
                "lmforge_monitor_live_macro_f1",
                "Macro-F1 over the last N predictions with feedback.",
                labels=[*mv, "window"],
            ),
            GaugeMetricFamily(
                "lmforge_monitor_live_labeled",
                "Predictions with feedback in the window.",
                labels=[*mv, "window"],
            ),
            GaugeMetricFamily(
                "lmforge_monitor_estimated_accuracy",
                "Label-free accuracy estimate at the latest check.",
                labels=mv,
            ),
            GaugeMetricFamily("lmforge_monitor_queue_depth", "Predictions waiting for the store writer."),
            CounterMetricFamily(
                "lmforge_monitor_dropped", "Predictions dropped because the store queue was full."
            ),
            CounterMetricFamily("lmforge_monitor_written", "Predictions written to the store."),
            CounterMetricFamily(
                "lmforge_monitor_write_failed",
                "Predictions lost because the store could not write them (database locked, disk full); "
                "serving goes on.",
            ),
            CounterMetricFamily(
                "lmforge_monitor_pruned", "Old predictions deleted by retention (retention_days, max_rows)."
            ),
            GaugeMetricFamily("lmforge_monitor_alerts_active", "Alert incidents in progress."),
            CounterMetricFamily(
                "lmforge_monitor_writer_restarts",
                "Times the store-writer process died and was started again (what it held is counted as failed).",
            ),
        )

    def collect(self) -> Iterator[Any]:
        m = self.monitor
        (preds, score, detected, acc, f1, labeled, estimate, depth, dropped, written, failed, pruned, active,
         restarts) = self._families()
        for (model, version), counts in sorted(m.label_counts().items()):
            for label, n in sorted(counts.items()):
                preds.add_metric([model, version, label], n)
        for model, version in m.versions():
            latest = m.drift_latest(model, version)
            for r in latest[2] if latest else []:
                if r.statistic is not None:
                    score.add_metric([model, version, r.name], r.statistic)
                if r.drift is not None:
                    detected.add_metric([model, version, r.name], 1.0 if r.drift else 0.0)
                if r.name == "accuracy-estimate" and r.statistic is not None:
                    estimate.add_metric([model, version], r.statistic)
            if m.store is not None:
                for w in m.settings.windows:
                    live = m.cached_live_metrics(model, version, w)
                    labeled.add_metric([model, version, str(w)], live["n"])
                    if live["accuracy"] is not None:
                        acc.add_metric([model, version, str(w)], live["accuracy"])
                        f1.add_metric([model, version, str(w)], live["macro_f1"])
        depth.add_metric([], m.queue_depth)
        dropped.add_metric([], m.dropped)
        written.add_metric([], m.written)
        failed.add_metric([], m.failed)
        pruned.add_metric([], m.pruned)
        active.add_metric([], len(m.active_alerts()))
        restarts.add_metric([], m.writer_restarts)
        yield from (preds, score, detected, acc, f1, labeled, estimate, depth, dropped, written, failed, pruned, active,
                    restarts)
