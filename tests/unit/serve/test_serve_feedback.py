"""Feedback cannot steer a rollout: a prediction is labeled by the key that asked for it (or an
admin), a label is final unless an admin overrides it, and each key's feedback has its own rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._serve import create_keys
from tests.unit.serve.conftest import settings_for


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def monitored_client(serve_run: Path, tmp_path: Path, make_client: Any, **overrides: Any) -> tuple[Any, dict]:
    from lmforge.monitor import MonitorSettings
    from lmforge.serve import ServeSettings, create_key, open_stores

    state = tmp_path / "state"
    tokens = create_keys(state)
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        tokens["other"] = create_key(stores, "other", "predict", actor="tests")[0]
    settings = settings_for(state, serve_run, **overrides)
    settings.monitor = MonitorSettings(url=f"sqlite:///{state}/monitor.db", drift_every=10**6, flush_interval_s=0.05)
    return make_client(settings), tokens


def predict(client: Any, token: str, text: str = "lost my bag again") -> dict[str, Any]:
    r = client.post("/v1/predict", json={"texts": [text]}, headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]  # type: ignore[no-any-return]


def feedback(client: Any, token: str, prediction_id: str, label: str) -> Any:
    return client.post("/v1/feedback", json={"prediction_id": prediction_id, "label": label}, headers=auth(token))


def test_only_the_asking_key_or_an_admin_labels_a_prediction(
    serve_run: Path, tmp_path: Path, make_client: Any
) -> None:
    client, tokens = monitored_client(serve_run, tmp_path, make_client)
    pred = predict(client, tokens["predict"])
    other = feedback(client, tokens["other"], pred["prediction_id"], "negative")
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden", other.text
    mine = feedback(client, tokens["predict"], pred["prediction_id"], "negative")
    assert mine.status_code == 200 and mine.json()["label"] == "negative"
    admin_pred = predict(client, tokens["predict"], "thank you, great crew")
    by_admin = feedback(client, tokens["admin"], admin_pred["prediction_id"], "positive")
    assert by_admin.status_code == 200 and by_admin.json()["label"] == "positive"


def test_a_label_is_final_unless_an_admin_overrides_it(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    client, tokens = monitored_client(serve_run, tmp_path, make_client)
    pid = predict(client, tokens["predict"])["prediction_id"]
    first = feedback(client, tokens["predict"], pid, "negative")
    assert first.status_code == 200
    again = feedback(client, tokens["predict"], pid, "negative")  # a retry: answered as before
    assert again.status_code == 200 and again.json() == first.json()
    flip = feedback(client, tokens["predict"], pid, "positive")
    assert flip.status_code == 409 and flip.json()["error"]["code"] == "feedback_conflict", flip.text
    assert "'negative'" in flip.json()["error"]["message"]
    override = feedback(client, tokens["admin"], pid, "positive")
    assert override.status_code == 200 and override.json()["label"] == "positive"
    after = feedback(client, tokens["predict"], pid, "negative")  # the admin's label is final too
    assert after.status_code == 409


def test_feedback_has_its_own_rate_per_key(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    client, tokens = monitored_client(
        serve_run, tmp_path, make_client, limits={"feedback_rate_per_s": 1}, auth={"rate_per_s": None}
    )
    preds = [predict(client, tokens["predict"], f"late flight {i}") for i in range(5)]
    codes = [feedback(client, tokens["predict"], p["prediction_id"], "negative") for p in preds]
    assert [r.status_code for r in codes[:2]] == [200, 200]  # the burst: twice the rate
    limited = [r for r in codes[2:] if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert limited[0].json()["error"]["code"] == "rate_limited" and limited[0].headers["retry-after"] == "1"
    assert predict(client, tokens["predict"])["label"]  # predictions are not limited by the feedback rate
    other_pred = predict(client, tokens["other"])
    assert feedback(client, tokens["other"], other_pred["prediction_id"], "negative").status_code == 200
