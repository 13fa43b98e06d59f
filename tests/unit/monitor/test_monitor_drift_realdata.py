"""Drift on real data: English airline tweets as the reference, Chinese reviews as injected drift.

The reference is the tiny fine-tuned run with its splits replaced by airline tweets; the
held-out tweets come from the same shuffled corpus, so they are the same distribution.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from lmforge.monitor import DriftData, Monitor, MonitorSettings, PredictionRecord, new_prediction_id

TEXT_DETECTORS = ("embedding", "oov-rate", "text-length-ks")
SEEDS = 10
BATCH = 100
MAX_FPR = 0.1  # per detector, over the seeds; every test is nominally at alpha = 0.01

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_every_builtin_detector_was_fitted(drift_corpus) -> None:
    state = drift_corpus.state
    assert state.skipped == {}
    assert set(state.detectors) >= set(TEXT_DETECTORS) | {
        "prediction-psi",
        "confidence-ks",
        "accuracy-estimate",
    }
    assert state.meta["n_outputs"] == 150 and state.meta["n_texts"] == 300


def test_chinese_batch_is_flagged_by_the_text_detectors(drift_corpus) -> None:
    results = {r.name: r for r in drift_corpus.state.score(drift_corpus.chinese)}
    for name in TEXT_DETECTORS:
        assert results[name].drift is True, (name, results[name].reason)
    assert results["embedding"].statistic > 0.95  # the domain classifier separates the languages
    assert (
        results["oov-rate"].detail["current_rate"] > 0.8 > 0.4 > results["oov-rate"].detail["reference_rate"]
    )


def test_held_out_slices_stay_below_the_stated_false_positive_rate(drift_corpus, record_property) -> None:
    held = drift_corpus.held_out
    flags: dict[str, list[bool | None]] = {}
    for seed in range(SEEDS):
        idx = np.random.default_rng(seed).choice(len(held), BATCH, replace=False)
        for r in drift_corpus.state.score(held.subset(idx)):
            flags.setdefault(r.name, []).append(r.drift)
    fpr = {name: sum(v is True for v in verdicts) / SEEDS for name, verdicts in flags.items()}
    record_property("false_positive_rate", json.dumps(fpr))
    print("false-positive rate over", SEEDS, "held-out batches of", BATCH, fpr)
    assert all(v is not None for verdicts in flags.values() for v in verdicts)  # every batch got a verdict
    assert max(fpr.values()) <= MAX_FPR, fpr


def _records(data: DriftData, model: str = "airline", version: str = "1") -> list[PredictionRecord]:
    proba = np.asarray(data.proba)
    now = time.time()
    return [
        PredictionRecord(
            id=new_prediction_id(),
            ts=now,
            model=model,
            version=version,
            text=text,
            label=data.classes[int(p.argmax())],
            confidence=float(p.max()),
            scores={c: float(v) for c, v in zip(data.classes, p, strict=True)},
            latency_ms=12.0,
        )
        for text, p in zip(data.texts, proba, strict=True)
    ]


def test_replayed_stream_flags_drift_only_after_the_switch(drift_corpus, tmp_path: Path) -> None:
    """Through the Monitor: 100 held-out tweets (no drift), then 100 Chinese reviews (drift, one alert)."""
    cached = tmp_path / "reference.json"
    drift_corpus.state.save(cached)  # fitted on the same run and settings: start() loads it, no refit
    settings = MonitorSettings(
        url=f"sqlite:///{tmp_path / 'monitor.db'}",
        reference_run=str(drift_corpus.run),
        reference_state=str(cached),
        drift_every=BATCH,
        drift_window=BATCH,
        drift_min_interval_s=0,
        flush_interval_s=0.05,
        alerts=[{"metric": "drifted", "op": ">=", "threshold": 3, "window": BATCH, "cooldown_s": 3600}],
    )
    held = drift_corpus.held_out.subset(np.arange(BATCH))
    with Monitor(settings, drift_corpus.labels) as monitor:
        assert monitor.reference.meta["fingerprint"] == drift_corpus.state.meta["fingerprint"]
        monitor.record_many(_records(held))
        monitor.flush(timeout=60)
        first = {r.name: r for r in monitor.drift_latest("airline", "1")[2]}
        monitor.record_many(_records(drift_corpus.chinese))
        monitor.flush(timeout=60)
        second = {r.name: r for r in monitor.drift_latest("airline", "1")[2]}
        summary = monitor.summary()
        checks = monitor.store.rows("drift")
        alerts = monitor.store.rows("alerts")
    assert not any(r.drift for r in first.values()), {n: r.reason for n, r in first.items() if r.drift}
    for name in TEXT_DETECTORS:
        assert second[name].drift is True, second[name].reason
    assert len(checks) == 2 * len(first)  # two checks, every detector stored each time
    assert [a["status"] for a in alerts] == ["firing"]  # one incident, notified once
    assert summary["models"][0]["drift"]["drifted"] == sorted(n for n, r in second.items() if r.drift)
