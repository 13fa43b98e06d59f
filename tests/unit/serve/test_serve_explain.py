"""``POST /v1/explain``: the served predictor's attributions, behind the predict key and its own rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._serve import create_keys
from tests.unit.serve.conftest import settings_for


def test_explain_route(tmp_path: Path, serve_run: Path, make_client: Any) -> None:
    from lmforge.predict import explain, load_predictor

    state = tmp_path / "state"
    keys = create_keys(state)
    client = make_client(settings_for(state, serve_run, limits={"explain_rate_per_s": 0.01, "explain_steps": 8}))
    auth = {"Authorization": f"Bearer {keys['predict']}"}
    text = "rude agent and no refund"
    assert client.post("/v1/explain", json={"text": text}).status_code == 401
    r = client.post("/v1/explain", json={"text": text, "top": 2}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    (want,) = explain(load_predictor(serve_run), [text], steps=8)
    assert (body["model"], body["version"], body["text"]) == ("sentiment", 1, text)
    assert (body["label"], body["method"], body["truncated"]) == (want.label, "integrated-gradients", False)
    assert [t["token"] for t in body["tokens"]] == [w.word for w in want.top(2)]
    assert [t["attribution"] for t in body["tokens"]] == [round(w.weight, 6) for w in want.top(2)]
    # The burst is 1 at 0.01/s: the next explanation is refused, and an unknown label never reaches the model.
    limited = client.post("/v1/explain", json={"text": text}, headers=auth)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert "limits.explain_rate_per_s" in limited.json()["error"]["message"]
    metrics = client.get("/metrics", headers=auth).text
    assert 'lmforge_explanations_total{method="integrated-gradients"} 1.0' in metrics
    assert 'lmforge_rejected_requests_total{reason="rate_limited"} 1.0' in metrics


def test_explain_errors(tmp_path: Path, serve_run: Path, make_client: Any) -> None:
    state = tmp_path / "state"
    keys = create_keys(state)
    client = make_client(settings_for(state, serve_run, limits={"max_text_chars": 50, "explain_rate_per_s": 100}))
    auth = {"Authorization": f"Bearer {keys['predict']}"}
    bad_label = client.post("/v1/explain", json={"text": "late", "label": "neutral"}, headers=auth)
    assert bad_label.status_code == 422
    assert bad_label.json()["error"]["message"] == "Unknown label 'neutral'; the model's labels are negative, positive."
    assert client.post("/v1/explain", json={"text": "x" * 51}, headers=auth).status_code == 422
    assert client.post("/v1/explain", json={"text": "late", "model": "other"}, headers=auth).status_code == 404
