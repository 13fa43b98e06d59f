"""The HTTP API in-process (lifespan run, real model, real SQLite, real monitoring): predictions, auth on
every route, limits, errors, metrics, the registry routes and hot swap."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests._runs import copy_run
from tests._serve import create_keys, labeled_texts
from tests.unit.serve.conftest import settings_for

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/chat"}  # /chat: a page with no data; its calls send a key
LOGIN = {"/login", "/logout"}  # the dashboard's browser login, public by design: see test_serve_sessions.py
ADMIN_ONLY = {  # GET /v1/models takes any key (OpenAI clients list models): tests/unit/serve/test_serve_generate.py
    "/v1/models/{name}/versions",
    "/v1/models/{name}/versions/{version}/activate",
    "/v1/models/{name}/canary",
    "/v1/models/{name}/rollback",
    "/v1/monitor/summary",
    "/dashboard",
}
UNKNOWN_TOKEN = "lmf_0123456789ab_" + "A" * 43


@pytest.fixture(scope="module")
def api(serve_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One app for the read-mostly tests: the tiny run, monitoring on, an admin and a predict key."""
    from fastapi.testclient import TestClient

    from lmforge.monitor import MonitorSettings
    from lmforge.serve import create_app

    state = tmp_path_factory.mktemp("api-state")
    tokens = create_keys(state)
    settings = settings_for(
        state,
        serve_run,
        model_name="sentiment",
        limits={"max_texts": 8, "max_text_chars": 300, "max_body_bytes": 20_000},
        auth={"key_cache_s": 0},
    )
    settings.monitor = MonitorSettings(
        url=f"sqlite:///{state}/monitor.db", text_policy="none", drift_every=10**6
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {"client": client, "app": app, "tokens": tokens, "state": state, "settings": settings}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: Any, status: int, code: str | None = None, fragment: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if fragment is not None:
        assert fragment in error["message"], error
    return error


def test_predict_round_trip_matches_the_model(api: dict[str, Any], serve_run: Path) -> None:
    from lmforge.predict import load_predictor

    texts = ["great flight, thank you", "lost my bag again, terrible"]
    r = api["client"].post("/v1/predict", json={"texts": texts}, headers=auth(api["tokens"]["predict"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"]) == ("sentiment", 1)
    expected = load_predictor(serve_run).predict_proba(texts)
    ids = set()
    for pred, row in zip(body["predictions"], expected, strict=True):
        assert pred["model"] == "sentiment" and pred["version"] == 1
        assert set(pred["scores"]) == {"negative", "positive"}
        assert np.allclose([pred["scores"]["negative"], pred["scores"]["positive"]], row, atol=1e-5)
        assert pred["label"] == ["negative", "positive"][int(row.argmax())]
        assert pred["score"] == pytest.approx(float(row.max()), abs=1e-5)
        uuid.UUID(hex=pred["prediction_id"])
        ids.add(pred["prediction_id"])
    assert len(ids) == 2
    # X-API-Key works as well as Bearer
    r = api["client"].post(
        "/v1/predict", json={"texts": ["ok"]}, headers={"X-API-Key": api["tokens"]["predict"]}
    )
    assert r.status_code == 200


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, routers included at run time (monitoring's) too."""
    out = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:  # FastAPI keeps an included router as one entry
                walk(included.routes, prefix + route.include_context.prefix)
                continue
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    out.append((method, prefix + route.path))

    walk(app.routes, "")
    assert out, "no routes found: has FastAPI changed how it stores them?"
    return out


def test_every_route_but_health_needs_a_key(api: dict[str, Any]) -> None:
    client, tokens = api["client"], api["tokens"]
    routes = _routes(api["app"])
    paths = {p for _, p in routes}
    assert {"/v1/predict", "/metrics", "/v1/feedback", *ADMIN_ONLY} <= paths  # monitoring mounted too
    checked = 0
    public: dict[str, int] = {}
    with_predict_key: dict[tuple[str, str], int] = {}
    for method, path in routes:
        url = path.replace("{name}", "sentiment").replace("{version}", "1")
        body = {} if method in ("POST", "PUT", "PATCH") else None
        if path in PUBLIC:
            public[path] = client.request(method, url, json=body).status_code
            continue
        if path in LOGIN:
            continue
        for headers in (
            {},
            auth(UNKNOWN_TOKEN),
            auth("not-a-key"),
            {"X-API-Key": UNKNOWN_TOKEN},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            r = client.request(method, url, json=body, headers=headers)
            assert_error(r, 401, "unauthorized")
            assert r.headers.get("www-authenticate") == "Bearer"
        r = client.request(method, url, json=body, headers=auth(tokens["predict"]))
        if path in ADMIN_ONLY:
            assert_error(r, 403, "forbidden", "needs the 'admin' role")
        else:
            with_predict_key[(method, path)] = r.status_code
        checked += 1
    assert checked >= len(ADMIN_ONLY) + 3
    assert public == {"/healthz": 200, "/readyz": 200, "/openapi.json": 200, "/chat": 200}, public  # loaded: ready
    # Past the key check: the empty bodies fail validation (not the role check), the read answers.
    assert with_predict_key == {("GET", "/metrics"): 200, ("POST", "/v1/predict"): 422,
                                ("POST", "/v1/feedback"): 422, ("GET", "/v1/models"): 200,
                                ("POST", "/v1/generate"): 422, ("POST", "/v1/chat/completions"): 422,
                                ("POST", "/v1/explain"): 422}, with_predict_key


def test_limits_and_bad_input_get_clear_4xx(api: dict[str, Any]) -> None:
    client, h = api["client"], auth(api["tokens"]["predict"])
    assert_error(
        client.post("/v1/predict", json={"texts": ["x"] * 9}, headers=h),
        422,
        "validation_error",
        "at most 8 items",
    )
    r = client.post("/v1/predict", json={"texts": ["x"] * 9}, headers=h)
    assert "limits.max_texts = 8" in r.json()["error"]["message"]
    assert_error(
        client.post("/v1/predict", json={"texts": ["y" * 301]}, headers=h),
        422,
        "validation_error",
        "limits.max_text_chars = 300",
    )
    assert_error(client.post("/v1/predict", json={"texts": []}, headers=h), 422)
    assert_error(client.post("/v1/predict", json={"texts": "just a string"}, headers=h), 422)
    assert_error(client.post("/v1/predict", json={"texts": ["a"], "extra": 1}, headers=h), 422)
    assert_error(
        client.post("/v1/predict", content=b'{"texts": [', headers={**h, "content-type": "application/json"}),
        400,
        "invalid_json",
    )
    assert_error(
        client.post(
            "/v1/predict",
            content=b"texts=a",
            headers={**h, "content-type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
    )
    assert_error(
        client.post("/v1/predict", json={"texts": ["a"], "model": "nope"}, headers=h),
        404,
        "not_found",
        "Served: sentiment",
    )
    assert_error(client.post("/v1/predict", json={"texts": ["a"], "model": "../etc"}, headers=h), 422)
    # over the body limit: refused from Content-Length, and for a chunked body without one
    big = json.dumps({"texts": ["z" * 250] * 100}).encode()
    assert_error(
        client.post("/v1/predict", content=big, headers={**h, "content-type": "application/json"}),
        413,
        "payload_too_large",
        "20000 bytes",
    )
    assert_error(
        client.post(
            "/v1/predict",
            content=iter([big[:10_000], big[10_000:]]),
            headers={**h, "content-type": "application/json"},
        ),
        413,
        "payload_too_large",
    )
    assert_error(client.get("/no/such/route", headers=h), 404, "not_found")
    assert_error(client.delete("/v1/predict", headers=h), 405, "method_not_allowed")
    r = client.post("/v1/models/nope/versions/1/activate", headers=auth(api["tokens"]["admin"]))
    assert_error(r, 404, "not_found", "No model named 'nope'")


def test_metrics_count_requests_batches_and_queue(api: dict[str, Any]) -> None:
    client, h = api["client"], auth(api["tokens"]["predict"])
    for _ in range(3):
        assert client.post("/v1/predict", json={"texts": ["a", "b"]}, headers=h).status_code == 200
    text = client.get("/metrics", headers=h).text
    assert 'lmforge_http_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert 'lmforge_http_requests_total{method="POST",route="/v1/predict",status="401"}' in text
    assert 'lmforge_batch_size_texts_count{model="sentiment"}' in text
    assert 'lmforge_queue_depth_texts{model="sentiment"} 0.0' in text
    assert "lmforge_http_request_duration_seconds_bucket" in text
    assert 'lmforge_model_loaded{model="sentiment",role="stable",version="1"} 1.0' in text
    assert "lmforge_monitor_" in text  # monitoring's collector is on the app's registry
    assert client.get("/metrics").status_code == 401


def test_feedback_through_the_monitoring_hook(api: dict[str, Any]) -> None:
    client, h = api["client"], auth(api["tokens"]["predict"])
    text, truth = labeled_texts()[0]
    pred = client.post("/v1/predict", json={"texts": [text]}, headers=h).json()["predictions"][0]
    r = client.post("/v1/feedback", json={"prediction_id": pred["prediction_id"], "label": truth}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["correct"] == (pred["label"] == truth)
    summary = client.get("/v1/monitor/summary", headers=auth(api["tokens"]["admin"]))
    assert summary.status_code == 200


def test_openapi_documents_every_error(api: dict[str, Any]) -> None:
    schema = api["client"].get("/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    predict = ops[("POST", "/v1/predict")]
    for status in ("400", "401", "404", "413", "415", "422", "429", "500", "503", "504"):
        assert status in predict["responses"], status
        assert predict["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorResponse"
        )
    request_schema = schema["components"]["schemas"]["PredictRequest"]["properties"]["texts"]
    assert request_schema["maxItems"] == 8 and request_schema["items"]["maxLength"] == 300
    for (method, path), op in ops.items():
        if path not in PUBLIC:
            assert "401" in op["responses"], (method, path)
        if path in ADMIN_ONLY and path.startswith("/v1/models"):
            assert "403" in op["responses"], (method, path)
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])


def test_rate_limit_and_revocation(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    from lmforge.serve import open_stores
    from lmforge.serve._admin import create_key, revoke_key

    state = tmp_path / "state"
    settings = settings_for(state, serve_run, auth={"key_cache_s": 0, "rate_per_s": 1000})
    with open_stores(settings) as stores:
        slow, slow_key = create_key(stores, "slow", "predict", actor="t", rate_per_s=0.5)
        fast, fast_key = create_key(stores, "fast", "predict", actor="t")
    client = make_client(settings)
    assert client.get("/metrics", headers=auth(slow)).status_code == 200  # burst of 1
    r = client.get("/metrics", headers=auth(slow))
    assert_error(r, 429, "rate_limited", slow_key.key_id)
    # 1 token per 2 s, burst 1: the next comes in (almost) 2 s, said the same in the header and the message
    retry = int(r.headers["retry-after"])
    assert retry in (1, 2) and f"retry after {retry} s." in r.json()["error"]["message"]
    assert client.get("/metrics", headers=auth(fast)).status_code == 200  # other keys are unaffected
    with open_stores(settings) as stores:
        revoke_key(stores, fast_key.key_id, actor="t")
    assert_error(client.get("/metrics", headers=auth(fast)), 401, "unauthorized", "revoked")
    assert fast not in (state / "audit.jsonl").read_text(encoding="utf-8")


def test_public_metrics_and_private_docs_are_settings(
    serve_run: Path, tmp_path: Path, make_client: Any
) -> None:
    tokens = create_keys(tmp_path / "state")
    client = make_client(
        settings_for(tmp_path / "state", serve_run, auth={"metrics_auth": False, "docs_auth": True})
    )
    assert client.get("/metrics").status_code == 200
    assert_error(client.get("/openapi.json"), 401)
    assert client.get("/openapi.json", headers=auth(tokens["predict"])).status_code == 200
    assert "/metrics" in client.get("/openapi.json", headers=auth(tokens["predict"])).json()["paths"]


def test_not_ready_without_a_model(tmp_path: Path, make_client: Any) -> None:
    client = make_client(settings_for(tmp_path / "state"))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert_error(client.get("/readyz"), 503, "not_ready")
    tokens = create_keys(tmp_path / "state")
    assert_error(
        client.post("/v1/predict", json={"texts": ["a"]}, headers=auth(tokens["predict"])),
        404,
        "not_found",
        "No model is being served",
    )


def test_registry_routes_hot_swap_canary_and_rollback(
    serve_run: Path, tmp_path: Path, make_client: Any
) -> None:
    from lmforge.guard import AuditLog

    state = tmp_path / "state"
    tokens = create_keys(state)
    v2 = copy_run(serve_run, tmp_path / "sentiment-v2").root
    client = make_client(settings_for(state, serve_run, model_name="sentiment"))
    admin, h = auth(tokens["admin"]), auth(tokens["predict"])

    def served_versions(n: int) -> set[int]:
        return {
            client.post("/v1/predict", json={"texts": ["hi"]}, headers=h).json()["version"] for _ in range(n)
        }

    r = client.post("/v1/models/sentiment/versions", json={"run": str(tmp_path / "missing")}, headers=admin)
    assert_error(r, 422, None, "does not exist")
    r = client.post("/v1/models/sentiment/versions", json={"run": str(v2)}, headers=admin)
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["status"] == "registered"
    assert served_versions(3) == {1}

    r = client.post("/v1/models/sentiment/versions/2/activate", headers=admin)
    assert r.status_code == 200 and r.json()["active_version"] == 2 and r.json()["loaded"]["stable"] == 2
    assert served_versions(3) == {2}

    assert_error(
        client.post("/v1/models/sentiment/canary", json={"version": 2, "percent": 50}, headers=admin),
        409,
        "conflict",
        "already active",
    )
    v3 = copy_run(serve_run, tmp_path / "sentiment-v3").root
    assert (
        client.post("/v1/models/sentiment/versions", json={"run": str(v3)}, headers=admin).status_code == 201
    )
    r = client.post("/v1/models/sentiment/canary", json={"version": 3, "percent": 50}, headers=admin)
    assert r.json()["loaded"] == {"stable": 2, "canary": 3, "queued_texts": 0, "load_error": None}
    assert served_versions(40) == {2, 3}  # P(one version never drawn in 40) = 2 x 0.5^40

    r = client.post("/v1/models/sentiment/rollback", headers=admin)
    assert r.json()["action"] == "canary_aborted" and r.json()["model"]["loaded"]["canary"] is None
    assert served_versions(5) == {2}
    r = client.post("/v1/models/sentiment/rollback", headers=admin)
    assert (r.json()["action"], r.json()["from_version"], r.json()["to_version"]) == ("reverted", 2, 1)
    assert served_versions(3) == {1}
    assert_error(client.post("/v1/models/sentiment/rollback", headers=admin), 409, "conflict")

    versions = client.get("/v1/models/sentiment/versions", headers=admin).json()["versions"]
    assert [v["status"] for v in versions] == ["active", "rolled_back", "rolled_back"]
    records = AuditLog(state / "audit.jsonl").records()
    api_actions = [r["action"] for r in records if r["actor"].startswith("api-key:")]
    assert api_actions == [
        "model.register",
        "model.activate",
        "model.register",
        "model.canary",
        "model.rollback",
        "model.rollback",
    ]


def test_registry_changes_made_offline_reach_a_running_server(
    serve_run: Path, tmp_path: Path, make_client: Any
) -> None:
    import time

    from lmforge.serve import open_stores

    state = tmp_path / "state"
    tokens = create_keys(state)
    settings = settings_for(state, serve_run, model_name="sentiment", registry_poll_s=0.2)
    client = make_client(settings)
    h = auth(tokens["predict"])
    assert client.post("/v1/predict", json={"texts": ["hi"]}, headers=h).json()["version"] == 1
    with open_stores(settings) as stores:  # what `lmforge registry register ... --activate` does
        info = stores.registry.register("sentiment", serve_run, allow_unsigned=True, actor="cli")
        stores.registry.activate("sentiment", info.version, actor="cli")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client.post("/v1/predict", json={"texts": ["hi"]}, headers=h).json()["version"] == 2:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the server never picked up version 2 from the registry")
