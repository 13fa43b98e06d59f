"""Generations in the monitor store (real SQLite and PostgreSQL): prompt and answer PII-masked by the text
policy, token counts and tokens/s per version, feedback as thumbs or a masked correction."""

from __future__ import annotations

import time

import pytest
from tests.unit.monitor.test_monitor_store import CANARIES, HANG, PII_TEXT, settings, stored_bytes

from lmforge.monitor import InvalidLabelError, Monitor, PredictionRecord


def _generation(ident: str, prompt: str, answer: str, prompt_tokens: int, tokens: int, ms: float) -> PredictionRecord:
    return PredictionRecord(id=ident, ts=time.time(), model="bot", version="1", text=prompt, label="stop",
                            confidence=1.0, latency_ms=ms, key_id="k1", output=answer, prompt_tokens=prompt_tokens,
                            completion_tokens=tokens)


def test_generations_are_stored_masked_with_tokens_and_take_thumbs_or_corrections(store_url: str) -> None:
    records = [_generation("a" * 32, f"user: {PII_TEXT}", f"sure, I wrote to {CANARIES[0]}", 30, 12, 400.0),
               _generation("b" * 32, "user: hello", "hello, how can I help?", 8, 6, 200.0)]
    with Monitor(settings(store_url), []) as monitor:
        monitor.record_many(records)
        monitor.flush(timeout=HANG)
        up = monitor.add_feedback("b" * 32, "up", key_id="k1")
        fixed = monitor.add_feedback("a" * 32, "", key_id="k1", correction=f"mail {CANARIES[0]} instead")
        with pytest.raises(InvalidLabelError, match="Unknown label 'positive'. Valid labels: up, down, or a correction"):
            monitor.add_feedback("b" * 32, "positive", key_id="k1")
        with pytest.raises(InvalidLabelError, match="Send a corrected answer as 'correction'"):
            monitor.add_feedback("b" * 32, "corrected", key_id="k1")
        rows = {r["id"]: r for r in monitor.store.rows("predictions")}
        feedback = {r["prediction_id"]: r for r in monitor.store.rows("feedback")}
        (version,) = monitor.summary()["models"]
        live = monitor.live_metrics("bot", "1")
    assert up == {"prediction_id": "b" * 32, "label": "up", "correct": True}
    assert fixed == {"prediction_id": "a" * 32, "label": "corrected", "correct": False}
    first = rows["a" * 32]
    assert first["text"] == "user: refund to [EMAIL], call [PHONE], ID [CN_ID] — flight was late"
    assert (first["output"], first["prompt_tokens"], first["completion_tokens"]) == ("sure, I wrote to [EMAIL]", 30, 12)
    assert feedback["a" * 32]["correction"] == "mail [EMAIL] instead" and feedback["b" * 32]["correction"] is None
    assert (version["prompt_tokens"], version["completion_tokens"], version["tokens_per_s"]) == (38, 18, 30.0)
    assert (live["n"], live["accuracy"]) == (2, 0.5)  # the thumbs-up share
    data = stored_bytes(store_url)
    assert all(value.encode() not in data for value in CANARIES)
