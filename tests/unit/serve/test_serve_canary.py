"""Automatic canary rollback on deliberately worse versions: one whose every call fails (NaN weights),
one that answers the opposite label (classifier rows swapped), judged by live feedback accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._serve import create_keys, edit_classifier, labeled_texts
from tests._wait import wait_until as wait_for
from tests.unit.serve.conftest import settings_for


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_canary(client: Any, tokens: dict[str, str], run: Path, percent: float) -> None:
    admin = auth(tokens["admin"])
    r = client.post("/v1/models/sentiment/versions", json={"run": str(run)}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/v1/models/sentiment/canary", json={"version": 2, "percent": percent}, headers=admin)
    assert r.status_code == 200 and r.json()["loaded"]["canary"] == 2, r.text


def canary_of(client: Any, tokens: dict[str, str]) -> int | None:
    models = client.get("/v1/models", headers=auth(tokens["admin"])).json()["models"]
    return models[0]["canary_version"]  # type: ignore[no-any-return]


def assert_rolled_back(client: Any, tokens: dict[str, str], state: Path, why: str) -> None:
    from lmforge.guard import AuditLog

    versions = client.get("/v1/models/sentiment/versions", headers=auth(tokens["admin"])).json()["versions"]
    assert [v["status"] for v in versions] == ["active", "rolled_back"]
    # The registry commit is visible a moment before the server has counted it.
    counted = 'lmforge_canary_rollbacks_total{model="sentiment"} 1.0'
    assert wait_for(lambda: counted in client.get("/metrics", headers=auth(tokens["admin"])).text)
    auto = [r for r in AuditLog(state / "audit.jsonl").records() if r["actor"] == "lmforge-serve (automatic)"]
    assert [r["action"] for r in auto] == ["model.rollback"]
    assert auto[0]["details"]["action"] == "canary_aborted" and why in auto[0]["details"]["reason"]


def test_failing_canary_is_rolled_back_and_no_request_fails(
    serve_run: Path, tmp_path: Path, make_client: Any
) -> None:
    broken = edit_classifier(serve_run, tmp_path / "broken", "nan").root
    state = tmp_path / "state"
    tokens = create_keys(state)
    client = make_client(
        settings_for(
            state, serve_run, model_name="sentiment", canary={"min_requests": 10, "check_interval_s": 0.2}
        )
    )
    start_canary(client, tokens, broken, percent=50)
    statuses = [
        client.post("/v1/predict", json={"texts": ["on time, thanks"]}, headers=auth(tokens["predict"]))
        .json()
        .get("version")
        for _ in range(40)
    ]
    assert statuses.count(1) == 40  # the canary's failures were answered by the stable version
    assert wait_for(lambda: canary_of(client, tokens) is None), "the failing canary was not rolled back"
    assert_rolled_back(client, tokens, state, "error rate")
    errors = client.get("/metrics", headers=auth(tokens["admin"])).text
    assert 'lmforge_model_errors_total{model="sentiment",version="2"}' in errors


def predict_keys(state: Path, n: int) -> list[str]:
    """``n`` more predict tokens: the clients whose feedback the canary judge counts."""
    from lmforge.serve import ServeSettings, create_key, open_stores

    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        return [create_key(stores, f"client-{i}", "predict", actor="tests")[0] for i in range(n)]


def label_through_the_canary(client: Any, tokens: list[str]) -> tuple[dict[int, int], dict[int, int], bool]:
    """Predict and label every text (keys taking turns) until the canary is gone or the texts run out."""
    seen = {1: 0, 2: 0}
    correct = {1: 0, 2: 0}
    for i, (text, truth) in enumerate(labeled_texts() * 3):
        h = auth(tokens[i % len(tokens)])
        pred = client.post("/v1/predict", json={"texts": [text]}, headers=h).json()["predictions"][0]
        r = client.post("/v1/feedback", json={"prediction_id": pred["prediction_id"], "label": truth}, headers=h)
        assert r.status_code == 200, r.text
        seen[pred["version"]] += 1
        correct[pred["version"]] += pred["label"] == truth
    return seen, correct, True


def feedback_canary_client(
    serve_run: Path, tmp_path: Path, make_client: Any, **overrides: Any
) -> tuple[Any, dict[str, str], Path]:
    from lmforge.monitor import MonitorSettings

    flipped = edit_classifier(serve_run, tmp_path / "flipped", "flipped").root
    state = tmp_path / "state"
    tokens = create_keys(state)
    settings = settings_for(
        state,
        serve_run,
        model_name="sentiment",
        canary={"min_requests": 10_000, "min_feedback": 8, "accuracy_margin": 0.2, "check_interval_s": 0.2},
        **overrides,
    )
    settings.monitor = MonitorSettings(
        url=f"sqlite:///{state}/monitor.db", text_policy="none", drift_every=10**6, flush_interval_s=0.1
    )
    client = make_client(settings)
    start_canary(client, tokens, flipped, percent=50)
    return client, tokens, state


def test_canary_with_worse_feedback_accuracy_is_rolled_back(
    serve_run: Path, tmp_path: Path, make_client: Any
) -> None:
    client, tokens, state = feedback_canary_client(serve_run, tmp_path, make_client)
    clients = predict_keys(state, 3)  # canary.min_feedback_keys
    seen, correct, _ = label_through_the_canary(client, clients)
    assert seen[2] >= 8, seen  # the canary got its share
    assert correct[1] / seen[1] > correct[2] / seen[2] + 0.5  # it really is worse
    assert wait_for(lambda: canary_of(client, tokens) is None), "the worse canary was not rolled back"
    assert_rolled_back(client, tokens, state, "live accuracy")


def test_one_key_alone_cannot_roll_a_canary_back(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    # one client labeling as fast as it can: its feedback rate is not what this test is about
    client, tokens, state = feedback_canary_client(
        serve_run, tmp_path, make_client, limits={"feedback_rate_per_s": None}
    )
    seen, correct, _ = label_through_the_canary(client, [tokens["predict"]])
    assert seen[2] >= 8 and correct[1] / seen[1] > correct[2] / seen[2] + 0.5, (seen, correct)
    # The judge's verdict on what the monitor stored, asked on the app's own loop (no waiting for its timer).
    import dataclasses

    from lmforge.serve._canary import CanaryJudge

    runtime = client.app_state["runtime"]
    runtime.monitor.flush()  # every label is in the store
    assert runtime.monitor.live_metrics("sentiment", "2", window=runtime.settings.canary.window)["n"] == seen[2]
    assert runtime.monitor.feedback_keys("sentiment", "2", window=runtime.settings.canary.window) == 1
    slot = runtime.slots["sentiment"]
    judge = CanaryJudge(runtime.settings.canary, runtime)
    assert client.portal.call(judge.verdict, slot) is None  # worse, but all its labels came from one client
    # The same labels from enough keys would roll it back: the key count alone holds the verdict.
    one_key = CanaryJudge(dataclasses.replace(runtime.settings.canary, min_feedback_keys=1), runtime)
    assert client.portal.call(one_key.verdict, slot).startswith("live accuracy")
    assert canary_of(client, tokens) == 2
    versions = client.get("/v1/models/sentiment/versions", headers=auth(tokens["admin"])).json()["versions"]
    assert [v["status"] for v in versions] == ["active", "canary"]
