"""Feedback scoped to the asking key, at the monitor's level, and a store from before key_id was kept."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from lmforge.monitor import (
    FeedbackConflictError,
    FeedbackForbiddenError,
    Monitor,
    MonitorSettings,
    PredictionRecord,
    new_prediction_id,
)


def record(key_id: str | None) -> PredictionRecord:
    return PredictionRecord(id=new_prediction_id(), ts=time.time(), model="m", version="1", text="late again",
                            label="neg", confidence=0.9, scores={"neg": 0.9, "pos": 0.1}, key_id=key_id)


def test_scope_finality_and_distinct_keys(store_url: str) -> None:
    monitor = Monitor(MonitorSettings(url=store_url, flush_interval_s=0.05), ["neg", "pos"])
    monitor.start()
    try:
        recs = [record("k1"), record("k2"), record(None)]
        monitor.record_many(recs)
        monitor.flush()
        with pytest.raises(FeedbackForbiddenError):
            monitor.add_feedback(recs[0].id, "neg", key_id="k2")
        assert monitor.add_feedback(recs[0].id, "neg", key_id="k1")["correct"] is True
        with pytest.raises(FeedbackConflictError):
            monitor.add_feedback(recs[0].id, "pos", key_id="k1")
        assert monitor.add_feedback(recs[0].id, "pos", key_id="admin-key", admin=True)["correct"] is False
        assert monitor.add_feedback(recs[1].id, "pos", key_id="k2")["correct"] is False
        assert monitor.add_feedback(recs[2].id, "neg", key_id="k9")["correct"] is True  # recorded without a key
        live = monitor.live_metrics("m", "1", window=10)
        assert live["n"] == 3 and live["accuracy"] == pytest.approx(1 / 3)
        assert monitor.feedback_keys("m", "1", window=10) == 3  # admin-key, k2, k9
        assert monitor.feedback_keys("m", "1", window=1) == 1
    finally:
        monitor.close()


def test_a_store_from_before_key_id_gets_the_column(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE predictions (id VARCHAR(64) PRIMARY KEY, ts FLOAT NOT NULL, model VARCHAR(200) "
                     "NOT NULL, version VARCHAR(200) NOT NULL, text_hash VARCHAR(64) NOT NULL, text TEXT, text_policy "
                     "VARCHAR(32) NOT NULL, label VARCHAR(200) NOT NULL, confidence FLOAT NOT NULL, scores JSON NOT "
                     "NULL, latency_ms FLOAT NOT NULL)")
        conn.execute("INSERT INTO predictions VALUES ('old1', 1.0, 'm', '1', 'h', NULL, 'hash', 'neg', 0.9, '{}', 1.0)")
        conn.execute("CREATE TABLE feedback (prediction_id VARCHAR(64) PRIMARY KEY, ts FLOAT NOT NULL, label "
                     "VARCHAR(200) NOT NULL, predicted VARCHAR(200) NOT NULL, correct BOOLEAN NOT NULL, model "
                     "VARCHAR(200) NOT NULL, version VARCHAR(200) NOT NULL, prediction_ts FLOAT NOT NULL)")
    monitor = Monitor(MonitorSettings(url=f"sqlite:///{db}"), ["neg", "pos"])
    monitor.start()
    try:
        assert monitor.add_feedback("old1", "pos", key_id="k1")["correct"] is False  # any key: none was recorded
    finally:
        monitor.close()
    with sqlite3.connect(db) as conn:
        for table in ("predictions", "feedback"):
            assert "key_id" in [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        assert conn.execute("SELECT key_id FROM feedback WHERE prediction_id = 'old1'").fetchone() == ("k1",)
