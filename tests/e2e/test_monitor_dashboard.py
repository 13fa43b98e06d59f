"""The monitor's routes in a real `lmforge serve RUN --monitor`, and its dashboard rendered by headless Chromium.

The server gets a stream through ``/v1/predict`` (English, then Chinese: drift against the run's
English training data, and an alert), six failed model calls (a canary whose every call fails,
answered by the stable version) and feedback; the browser logs in with an admin key, as a person
would, and the page must show all of it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests._chromium import MISSING, Browser, chromium_installed
from tests._runs import NEG, POS, copy_run
from tests._serve import create_keys, edit_classifier, serve_process

httpx = pytest.importorskip("httpx")

ZH = [
    "这本书写得很好，值得一读",
    "质量太差了，用了两天就坏",
    "物流很快，包装也不错",
    "客服态度恶劣，不会再买",
    "价格便宜，性价比很高",
    "屏幕有划痕，非常失望",
    "味道很好，孩子很喜欢",
    "尺码偏小，退货很麻烦",
]
ENGLISH = [f"{(POS + NEG)[i % 16]}{'!' * (i % 3)}" for i in range(150)]
CHINESE = [f"{ZH[i % 8]}{'，真的' * (i % 4)}" for i in range(100)]
CANARY_CALLS = 6  # failed model calls, on the canary: the errors the page shows
MINUTES = 3  # the dashboard's range: 5-second buckets, so the stream below spans several


@dataclass(frozen=True)
class Served:
    id: str
    label: str


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def post(client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    """POST, waiting out a 429 (feedback has a rate of its own) as a well-behaved client does."""
    for _ in range(30):
        reply = client.post(path, json=body, headers=headers)
        if reply.status_code != 429:
            return reply
        time.sleep(min(float(reply.headers.get("retry-after", "1")), 2.0))
    raise AssertionError(f"{path} stayed at 429")


def predict(client: httpx.Client, token: str, texts: list[str]) -> list[Served]:
    reply = client.post("/v1/predict", json={"texts": texts}, headers=auth(token))
    assert reply.status_code == 200, reply.text
    assert reply.json()["version"] == 1, reply.text  # the stable version answered, canary or not
    return [Served(p["prediction_id"], p["label"]) for p in reply.json()["predictions"]]


def stable_summary(client: httpx.Client, admin: str) -> dict[str, Any]:
    summary = client.get("/v1/monitor/summary", headers=auth(admin)).json()
    return next((m for m in summary["models"] if m["version"] == "1"), {"predictions": 0, "drift": None}) | {
        "store": summary["store"]
    }


def fail_on_a_canary(client: httpx.Client, tokens: dict[str, str], broken: Path, texts: list[str]) -> list[Served]:
    """Every request to a NaN canary fails and is answered by the stable version: one error each."""
    admin = auth(tokens["admin"])
    reply = client.post("/v1/models/sentiment/versions", json={"run": str(broken)}, headers=admin)
    assert reply.status_code == 201, reply.text
    reply = client.post("/v1/models/sentiment/canary", json={"version": 2, "percent": 100}, headers=admin)
    assert reply.status_code == 200, reply.text
    served = [row for text in texts for row in predict(client, tokens["predict"], [text])]
    reply = client.post("/v1/models/sentiment/canary", json={"version": 2, "percent": 0}, headers=admin)
    assert reply.status_code == 200, reply.text
    return served


def stream(client: httpx.Client, tokens: dict[str, str], texts: list[str], already: int) -> list[Served]:
    """``texts`` in requests that end on every 25th prediction, each written before the next is sent, and
    each drift check (every 100) done before the stream goes on: it sees the window at that point."""
    served: list[Served] = []
    checked: float | None = None

    def summary_of() -> dict[str, Any]:
        return stable_summary(client, tokens["admin"])

    while texts:
        n = 25 - (already + len(served)) % 25
        served += predict(client, tokens["predict"], texts[:n])
        texts = texts[n:]
        total = already + len(served)
        wait_for(f"{total} predictions written", lambda n=total: summary_of()["store"]["written"] >= n)
        if total % 100 == 0:
            wait_for(f"the drift check at {total}",
                     lambda last=checked: (d := summary_of()["drift"]) is not None and d["ts"] != last)
            checked = summary_of()["drift"]["ts"]
        time.sleep(1.5)  # spread over several of the dashboard's buckets
    return served


@pytest.fixture(scope="module")
def served(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`lmforge serve --monitor` with a stream, errors, drift checks and an alert behind it."""
    tmp = tmp_path_factory.mktemp("dashboard")
    run = copy_run(trained_full, tmp / "sentiment").root
    broken = edit_classifier(trained_full, tmp / "broken", "nan").root
    state = tmp / "state"
    tokens = create_keys(state)
    config = {
        "registry_poll_s": 0,
        "drain_s": 0.2,
        "monitor": {  # no reference_run: the served run is the drift reference
            "url": f"sqlite:///{state / 'monitor.db'}",
            "detectors": ["oov-rate", "text-length-ks"],
            "drift_every": 100,
            "drift_window": 100,
            "drift_min_interval_s": 0,
            "flush_interval_s": 0.05,
            "alerts": [{"metric": "drifted", "op": ">=", "threshold": 1, "window": 100, "cooldown_s": 600}],
        },
    }
    args = ("--monitor", "--allow-unsigned", "--state", str(state))
    with serve_process(tmp, run, *args, config=config, tokens=tokens) as srv, httpx.Client(
        base_url=srv.url, timeout=60
    ) as client:
        rows = fail_on_a_canary(client, tokens, broken, ENGLISH[:CANARY_CALLS])
        rows += stream(client, tokens, ENGLISH[CANARY_CALLS:] + CHINESE, already=len(rows))
        yield {"url": srv.url, "server": srv, "stream": rows, "tokens": tokens}


def test_feedback_route_status_codes_and_error_bodies(served: dict[str, Any]) -> None:
    url, rows, tokens = served["url"], served["stream"], served["tokens"]
    key = auth(tokens["predict"])
    with httpx.Client(base_url=url, timeout=10) as client:
        anonymous = client.post("/v1/feedback", json={"prediction_id": rows[0].id, "label": "positive"})
        unknown = post(client, "/v1/feedback", {"prediction_id": "does-not-exist", "label": "positive"}, key)
        bad_label = post(client, "/v1/feedback", {"prediction_id": rows[0].id, "label": "neutral"}, key)
        malformed = post(client, "/v1/feedback", {"prediction_id": rows[0].id}, key)
        ok = [post(client, "/v1/feedback", {"prediction_id": r.id, "label": "negative"}, key) for r in rows[:40]]
        schema = client.get("/openapi.json").json()
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert unknown.status_code == 404
    assert (
        unknown.json()["error"]["code"] == "unknown_prediction"
        and "does-not-exist" in unknown.json()["error"]["message"]
    )
    assert bad_label.status_code == 422
    assert bad_label.json() == {
        "error": {
            "code": "invalid_label",
            "message": "Unknown label 'neutral'. Valid labels: negative, positive.",
        }
    }
    assert malformed.status_code == 422
    assert all(r.status_code == 200 for r in ok), [r.text for r in ok if r.status_code != 200][:3]
    assert ok[0].json() == {"prediction_id": rows[0].id, "label": "negative", "correct": rows[0].label == "negative"}
    assert [r.json()["correct"] for r in ok] == [r.label == "negative" for r in rows[:40]]
    assert {r.json()["correct"] for r in ok} == {True, False}  # the model predicted both labels
    responses = schema["paths"]["/v1/feedback"]["post"]["responses"]
    assert {"200", "404", "422"} <= set(responses)
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    dashboard = schema["paths"]["/dashboard"]["get"]["responses"]
    assert "text/html" in dashboard["200"]["content"] and "application/json" in dashboard["422"]["content"]


def test_summary_is_admin_only_and_counts_everything(served: dict[str, Any]) -> None:
    tokens = served["tokens"]
    with httpx.Client(base_url=served["url"], timeout=10) as client:
        assert client.get("/v1/monitor/summary", headers=auth(tokens["predict"])).status_code == 403
        summary = client.get("/v1/monitor/summary", headers=auth(tokens["admin"])).json()
    versions = {(m["model"], m["version"]): m for m in summary["models"]}
    assert set(versions) <= {("sentiment", "1"), ("sentiment", "2")}, set(versions)
    stable = versions[("sentiment", "1")]
    assert stable["predictions"] == 250
    assert versions.get(("sentiment", "2"), {"predictions": 0})["predictions"] == 0  # the canary answered none
    assert summary["store"]["written"] == 250 and summary["store"]["dropped"] == 0
    assert summary["store"]["errors_recorded"] == CANARY_CALLS
    assert stable["drift"]["drifted"]  # the last window is half Chinese, the reference English
    assert [a["status"] for a in summary["alerts"]["recent"]] == ["firing"]


def test_dashboard_renders_in_headless_chromium(served: dict[str, Any], tmp_path: Path) -> None:
    if not chromium_installed():
        pytest.skip(MISSING)
    url, tokens = served["url"], served["tokens"]
    admin = auth(tokens["admin"])
    with httpx.Client(base_url=url, timeout=10) as client:
        anonymous = client.get("/dashboard")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
        repeated = client.get("/dashboard?model=a&model=b", headers=admin)
        assert repeated.status_code == 422 and repeated.json()["error"]["code"] == "invalid_query"
        assert client.get("/dashboard?minutes=-5", headers=admin).status_code == 422
        for r in served["stream"][150:200]:  # feedback on the Chinese part too: the accuracy chart gets points
            assert post(client, "/v1/feedback", {"prediction_id": r.id, "label": "positive"}, admin).status_code == 200
    page = f"{url}/dashboard?minutes={MINUTES}"
    shot = tmp_path / "dashboard.png"
    with Browser(tmp_path / "profile") as browser:
        assert browser.goto(page) == f"{url}/login?next=/dashboard"
        browser.type("#api_key", tokens["admin"])
        assert browser.click("button[type=submit]") == f"{url}/dashboard"
        assert browser.goto(page) == page
        dom = browser.html()
        browser.screenshot(shot)
    artifacts = os.environ.get("LMFORGE_TEST_ARTIFACTS")
    if artifacts and shot.exists():
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "monitor-dashboard.png")
    assert "lmforge monitor" in dom, dom[:500]
    charts = dict(re.findall(r'<svg class="chart" data-chart="([a-z-]+)"(.*?)</svg>', dom, flags=re.S))
    assert set(charts) == {"throughput", "latency", "error-rate", "label-mix", "accuracy", "drift"}
    for kind in ("throughput", "latency", "error-rate", "accuracy"):
        assert "<polyline" in charts[kind] or "<circle" in charts[kind], kind
    assert charts["label-mix"].count("<rect") > 4
    assert 'data-state="drift"' in charts["drift"] and 'data-state="ok"' in charts["drift"]
    predictions_tile = re.search(r'data-tile="predictions">.*?class="v">([^<]+)<', dom, flags=re.S)
    assert predictions_tile and predictions_tile.group(1) == "250"
    assert re.search(r'data-tile="errors">.*?class="v">2\.3%<', dom, flags=re.S)  # 6 errors / 256 requests
    assert 'data-detector="oov-rate"' in dom and "firing" in dom
    # Self-contained: no script, no stylesheet or image fetched from anywhere.
    assert "<script" not in dom and " src=" not in dom and " href=" not in dom
    assert set(re.findall(r"https?://[^\s\"'<>]+", dom)) <= {"http://www.w3.org/2000/svg"}
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert tokens["admin"] not in dom and tokens["admin"] not in served["server"].output()
