"""The Prometheus collector and the summary, read from a live Monitor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lmforge.monitor import DriftData, Monitor, MonitorSettings, fit_detectors

LABELS = ["negative", "positive"]


def test_collector_exposes_counts_drift_accuracy_and_queue(tmp_path: Path, make_records) -> None:
    prometheus = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    settings = MonitorSettings(url=f"sqlite:///{tmp_path / 'm.db'}", windows=(4, 100), flush_interval_s=0.05)
    with Monitor(settings, LABELS) as monitor:
        records = make_records(40, texts=[f"short text {i}" for i in range(40)])
        monitor.record_many(records)
        monitor.flush()
        for rec, ok in zip(records[-5:], [False, True, True, True, True], strict=True):
            monitor.add_feedback(rec.id, rec.label if ok else next(x for x in LABELS if x != rec.label))
        # A reference of the same texts: the drift check has verdicts to expose.
        reference = make_records(60, texts=[f"short text {i}" for i in range(60)])
        monitor.reference = fit_detectors(
            DriftData([r.text for r in reference]), None, ["oov-rate", "text-length-ks", "prediction-psi"]
        )
        monitor.check_drift("m", "1")
        registry = prometheus.CollectorRegistry()
        registry.register(monitor.collector())
        text = prometheus.generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("lmforge_monitor_predictions_total", model="m", version="1", label="negative") == 20
    assert value("lmforge_monitor_predictions_total", model="m", version="1", label="positive") == 20
    # The one wrong answer is the oldest of the 5 labeled: outside the window of the 4 newest.
    assert value("lmforge_monitor_live_accuracy", model="m", version="1", window="4") == 1.0
    assert value("lmforge_monitor_live_accuracy", model="m", version="1", window="100") == pytest.approx(0.8)
    assert value("lmforge_monitor_live_labeled", model="m", version="1", window="100") == 5
    assert value("lmforge_monitor_drift_detected", model="m", version="1", detector="text-length-ks") == 0.0
    assert (
        "lmforge_monitor_drift_score",
        (("detector", "oov-rate"), ("model", "m"), ("version", "1")),
    ) in samples
    # prediction-psi has no reference outputs: no verdict, so no sample rather than a made-up 0.
    assert not any(
        k[0] == "lmforge_monitor_drift_detected" and ("detector", "prediction-psi") in k[1] for k in samples
    )
    assert value("lmforge_monitor_queue_depth") == 0 and value("lmforge_monitor_dropped_total") == 0
    assert value("lmforge_monitor_written_total") == 40


def test_drift_checks_respect_the_minimum_interval(tmp_path: Path, make_records) -> None:
    settings = MonitorSettings(
        url=f"sqlite:///{tmp_path / 'm.db'}",
        drift_every=20,
        drift_window=20,
        drift_min_interval_s=3600,
        flush_interval_s=0.05,
    )
    with Monitor(settings, LABELS) as monitor:
        reference = make_records(40, texts=[f"short text {i}" for i in range(40)])
        monitor.reference = fit_detectors(DriftData([r.text for r in reference]), None, ["text-length-ks"])
        for _ in range(3):  # 60 predictions: three times drift_every, but within one interval
            monitor.record_many(make_records(20))
            monitor.flush()
        assert len(monitor.store.rows("drift")) == 1


def test_dashboard_counts_are_exact_per_bucket(tmp_path: Path, make_records) -> None:
    from lmforge.monitor._views import dashboard_data

    settings = MonitorSettings(url=f"sqlite:///{tmp_path / 'm.db'}", flush_interval_s=0.05)
    with Monitor(settings, LABELS) as monitor:
        now = time.time()
        monitor.record_many(make_records(90, t0=now - 1800, labels=["negative"] * 60 + ["positive"] * 30))
        monitor.record_many(make_records(10, t0=now - 7200))  # outside the last hour
        monitor.record_error("m", "1", 503)
        monitor.flush()
        data = dashboard_data(monitor, minutes=60)
    assert data["headline"]["predictions"] == 90 and data["headline"]["errors"] == 1
    assert sum(data["throughput"]) * data["bucket_s"] == pytest.approx(90)
    assert data["headline"]["label_mix"] == {
        "negative": pytest.approx(60 / 90),
        "positive": pytest.approx(30 / 90),
    }
    busy = [i for i, c in enumerate(data["throughput"]) if c]
    assert all(sum(share[i] for _, share in data["label_mix"]) == pytest.approx(1.0) for i in busy)
    assert data["headline"]["latency_p95_ms"] == pytest.approx(9.0, abs=0.1)  # latencies are 5..9 ms
