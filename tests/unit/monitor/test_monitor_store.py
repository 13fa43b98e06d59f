"""The Monitor's store on real SQLite and PostgreSQL: writes off the request path, text policies, restart,
feedback, live metrics. ``store_url`` (tests/unit/monitor/conftest.py) runs each store test on both."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from tests._postgres import postgres_rows_text
from tests._wait import wait_until

from lmforge.errors import ConfigError, LmforgeError
from lmforge.monitor import (
    InvalidLabelError,
    Monitor,
    MonitorSettings,
    UnknownPredictionError,
    classification_metrics,
)

LABELS = ["negative", "positive"]
CANARIES = ("jane.doe@example.com", "13812345678", "11010519491231002X")
PII_TEXT = f"refund to {CANARIES[0]}, call {CANARIES[1]}, ID {CANARIES[2]} — flight was late"


HANG = 30.0  # seconds: only bounds a hang, never a measurement


def settings(url: str, **kw) -> MonitorSettings:
    kw.setdefault("flush_interval_s", 0.05)
    return MonitorSettings(url=url, **kw)


def stored_bytes(url: str) -> bytes:
    """What the database keeps: on SQLite every byte on disk (main file, WAL, shared memory), on
    PostgreSQL every row of every table in its text form."""
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    return postgres_rows_text(url).encode()


def test_records_are_written_in_batches_with_every_field(store_url: str, make_records) -> None:
    records = make_records(250)
    with Monitor(settings(store_url, batch_size=100), LABELS) as monitor:
        monitor.record_many(records)  # only enqueues: see the close test, where nothing is written yet
        monitor.flush()
        rows = {r["id"]: r for r in monitor.store.rows("predictions")}
        assert monitor.written == 250 and monitor.queue_depth == 0
    assert set(rows) == {r.id for r in records}
    r, row = records[7], rows[records[7].id]
    assert (row["model"], row["version"], row["label"]) == (r.model, r.version, r.label)
    assert row["confidence"] == pytest.approx(r.confidence) and row["latency_ms"] == pytest.approx(
        r.latency_ms
    )
    assert row["scores"] == pytest.approx(r.scores) and row["ts"] == pytest.approx(r.ts)
    assert row["text"] == r.text and len(row["text_hash"]) == 64 and row["text_policy"] == "redact"


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    with Monitor(settings(f"sqlite:///{tmp_path / 'db' / 'monitor.db'}"), LABELS):
        pass
    with sqlite3.connect(tmp_path / "db" / "monitor.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_close_flushes_what_is_still_queued_and_a_restart_loses_nothing(store_url: str, make_records) -> None:
    first, second = make_records(120), make_records(30, t0=time.time())
    slow = settings(store_url, flush_interval_s=30.0, batch_size=10_000)  # the writer would wait 30 s
    monitor = Monitor(slow, LABELS)
    monitor.start()
    monitor.record_many(first)
    # The writer takes them off the queue into its batch at once, then waits for more: 30 s, or close().
    assert wait_until(lambda: monitor.queue_depth == 0, HANG), f"the writer never took them: {monitor.queue_depth} queued"
    assert monitor.store.count() == 0  # held in the writer's batch: only close() can have written them
    monitor.close()
    assert monitor.written == 120
    with Monitor(settings(store_url), LABELS) as again:  # a restart on the same database
        assert again.store.count() == 120
        again.record_many(second)
        feedback = again.add_feedback(first[0].id, first[0].label)  # a prediction from before the restart
        again.flush()
        assert again.store.count() == 150 and again.store.count("feedback") == 1
    assert feedback == {"prediction_id": first[0].id, "label": first[0].label, "correct": True}


def test_default_policy_never_stores_pii_in_clear(store_url: str, make_records) -> None:
    records = make_records(20, texts=[f"{PII_TEXT} #{i}" for i in range(20)])
    with Monitor(settings(store_url), LABELS) as monitor:
        monitor.record_many(records)
        monitor.flush()
        stored = monitor.store.rows("predictions")[0]["text"]
    raw = stored_bytes(store_url)
    assert b"flight was late" in raw  # what was read is the store's own data
    for canary in CANARIES:
        assert canary.encode() not in raw, canary
    assert "[EMAIL]" in stored and "[PHONE]" in stored and "[CN_ID]" in stored and "flight was late" in stored


@pytest.mark.parametrize("policy", ["encrypt", "redact+encrypt", "hash"])
def test_other_policies_keep_pii_out_of_the_database(
    policy: str, store_url: str, make_records, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cryptography")
    monkeypatch.setenv("LMFORGE_ENCRYPTION_KEY", os.urandom(32).hex())
    monkeypatch.setenv("LMFORGE_PII_SALT", "a-long-enough-secret-salt")  # the key of the hash policy's HMAC
    with Monitor(settings(store_url, text_policy=policy), LABELS) as monitor:
        monitor.record_many(make_records(5, texts=[PII_TEXT] * 5))
        monitor.flush()
        row = monitor.store.rows("predictions")[0]
        revealed = monitor._policy.reveal(row["text"])
    raw = stored_bytes(store_url)
    assert row["text_hash"].encode() in raw  # what was read is the store's own data
    assert not any(c.encode() in raw for c in CANARIES)
    if policy == "hash":
        assert row["text"] is None and len(row["text_hash"]) == 64
    elif policy == "encrypt":
        assert revealed == PII_TEXT  # recoverable with the key, and only with it
    else:
        assert "[EMAIL]" in revealed and CANARIES[0] not in revealed


def test_encrypt_policy_without_a_key_fails_at_start_not_on_the_request_path(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cryptography")
    monkeypatch.delenv("LMFORGE_ENCRYPTION_KEY", raising=False)
    monitor = Monitor(settings(store_url, text_policy="encrypt"), LABELS)
    with pytest.raises(LmforgeError, match="LMFORGE_ENCRYPTION_KEY"):
        monitor.start()


def test_full_queue_drops_and_counts_without_blocking(store_url: str, make_records) -> None:
    monitor = Monitor(settings(store_url, queue_size=10), LABELS)  # not started: nothing drains the queue
    # In a thread: a blocking put would wait forever here (nothing drains), and the join would give up.
    caller = threading.Thread(target=monitor.record_many, args=(make_records(25),), daemon=True)
    caller.start()
    caller.join(HANG)
    assert not caller.is_alive(), "record_many blocked on a full queue"
    assert monitor.dropped == 15 and monitor.queue_depth == 10
    monitor.record_many([object()])  # garbage never raises on the request path
    assert monitor.invalid == 1
    monitor.start()
    monitor.flush()
    assert monitor.written == 10 and monitor.store.count() == 10
    monitor.close()
    monitor.record_many(make_records(2))  # after close: counted, not raised
    assert monitor.dropped == 17


def test_a_malformed_record_is_dropped_alone(store_url: str, make_records) -> None:
    good = make_records(3)
    bad = good[0].__class__(**{**good[0].__dict__, "id": "bad", "confidence": float("nan")})
    with Monitor(settings(store_url), LABELS) as monitor:
        monitor.record_many([good[0], bad, good[1], "not a record", good[2]])  # type: ignore[list-item]
        monitor.flush()
        assert monitor.store.count() == 3 and monitor.invalid == 2


def test_feedback_errors_are_user_errors(store_url: str, make_records) -> None:
    records = make_records(2)
    with Monitor(settings(store_url, flush_interval_s=30.0), LABELS) as monitor:
        monitor.record_many(records)
        # Not written yet (the writer waits 30 s), and still accepted: the id is known at once.
        assert monitor.add_feedback(records[1].id, "negative")["correct"] is (records[1].label == "negative")
        with pytest.raises(UnknownPredictionError, match="No prediction with id 'nope'"):
            monitor.add_feedback("nope", "negative")
        with pytest.raises(
            InvalidLabelError, match="Unknown label 'neutral'. Valid labels: negative, positive"
        ):
            monitor.add_feedback(records[0].id, "neutral")
    assert issubclass(UnknownPredictionError, LmforgeError) and issubclass(InvalidLabelError, LmforgeError)


def test_live_metrics_match_a_hand_computation(store_url: str, make_records) -> None:
    predicted = [
        "positive",
        "positive",
        "negative",
        "negative",
        "positive",
        "negative",
        "positive",
        "negative",
    ]
    truth = ["positive", "negative", "negative", "negative", "positive", "positive", "positive", "negative"]
    records = make_records(10, labels=predicted + ["positive", "negative"])
    with Monitor(settings(store_url), LABELS) as monitor:
        monitor.record_many(records)
        monitor.flush()
        assert monitor.live_metrics("m", "1") == {"n": 0, "accuracy": None, "macro_f1": None}
        for rec, label in zip(records[:8], truth, strict=True):
            monitor.add_feedback(rec.id, label)
        monitor.add_feedback(records[1].id, "positive", admin=True)  # an admin's correction replaces the first
        last6 = monitor.live_metrics("m", "1", window=6)  # the 6 newest labeled predictions: records 2..7
        everything = monitor.live_metrics("m", "1", window=100)
        other = monitor.live_metrics("m", "2", window=100)
    # Records 2..7: predicted N N P N P N, true N N P P P N -> 5 of 6 right.
    # negative: tp 3, fp 1, fn 0 -> F1 6/7; positive: tp 2, fp 0, fn 1 -> F1 4/5.
    assert last6 == {"n": 6, "accuracy": pytest.approx(5 / 6), "macro_f1": pytest.approx((6 / 7 + 4 / 5) / 2)}
    # All 8 (record 1 corrected to right): wrong only at record 5 -> 7/8.
    # negative: tp 3 fp 1 fn 0 -> 6/7; positive: tp 4 fp 0 fn 1 -> 8/9.
    assert everything == {
        "n": 8,
        "accuracy": pytest.approx(7 / 8),
        "macro_f1": pytest.approx((6 / 7 + 8 / 9) / 2),
    }
    assert other["n"] == 0


def test_macro_f1_agrees_with_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    pred = ["a", "b", "c", "a", "a", "c", "b", "b", "a", "c"]
    true = ["a", "c", "c", "a", "b", "c", "b", "a", "a", "a"]
    got = classification_metrics(list(zip(pred, true, strict=True)))
    assert got["macro_f1"] == pytest.approx(metrics.f1_score(true, pred, average="macro"))
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(true, pred))


def test_settings_validate_everything_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        MonitorSettings(text_policy="plain", windows=(0,), drift_every=0, detectors=["nope"])
    message = str(info.value)
    for fragment in (
        "text_policy must be one of redact",
        "windows must be positive",
        "drift_every",
        "Unknown drift detector 'nope'",
    ):
        assert fragment in message
    with pytest.raises(ConfigError, match="Unknown monitor setting key.*'urll'.*Known: url"):
        MonitorSettings.from_dict({"urll": "sqlite://"})
    with pytest.raises(ConfigError, match="Unknown alert metric 'acuracy'"):
        MonitorSettings.from_dict({"alerts": [{"metric": "acuracy"}]})
    with pytest.raises(ConfigError, match="webhook action needs webhook_url"):
        MonitorSettings.from_dict({"alerts": [{"metric": "accuracy", "actions": ["webhook"]}]})
    with pytest.raises(ConfigError, match="Unknown option.*'treshold'.*of drift detector 'embedding'"):
        MonitorSettings(detector_options={"embedding": {"treshold": 0.6}})
    s = MonitorSettings.from_dict(
        {"windows": [50, 500], "alerts": [{"metric": "drift:embedding", "op": ">", "threshold": 0.7}]}
    )
    assert s.windows == (50, 500) and s.alerts[0].name == "drift:embedding > 0.7"
    assert MonitorSettings.from_dict(s.to_dict()) == s
