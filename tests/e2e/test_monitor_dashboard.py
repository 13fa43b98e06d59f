"""The monitor's routes in a real FastAPI app on 127.0.0.1, and the dashboard rendered by headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._runs import NEG, POS, copy_run

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI, HTTPException, Request  # noqa: E402

from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, new_prediction_id  # noqa: E402

# Debian's package is `chromium`, Ubuntu's `chromium-browser`; .ci/run installs Debian's.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
LABELS = ["negative", "positive"]
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
ADMIN_TOKEN = "admin-token"


def require_predict(request: Request) -> None:
    if request.headers.get("x-role") not in ("predict", "admin"):
        raise HTTPException(403, "predict role needed")


def require_admin(request: Request) -> None:
    # The browser cannot send headers from the command line, so the test admin may use a query token.
    if request.headers.get("x-role") != "admin" and request.query_params.get("token") != ADMIN_TOKEN:
        raise HTTPException(403, "admin role needed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def records(texts: list[str], t0: float) -> list[PredictionRecord]:
    out = []
    for i, text in enumerate(texts):
        label = LABELS[i % 2]
        conf = 0.55 + 0.4 * ((i * 37) % 100) / 100
        out.append(
            PredictionRecord(
                id=new_prediction_id(),
                ts=t0 + i * 2.0,
                model="demo",
                version="3",
                text=text,
                label=label,
                confidence=conf,
                scores={label: conf, LABELS[1 - i % 2]: 1 - conf},
                latency_ms=8.0 + (i % 13),
            )
        )
    return out


@pytest.fixture(scope="module")
def served(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A monitor with a stream, feedback, errors, drift checks and an alert, served by uvicorn in a thread."""
    import uvicorn

    tmp = tmp_path_factory.mktemp("dashboard")
    run = copy_run(trained_full, tmp / "run")
    settings = MonitorSettings(
        url=f"sqlite:///{tmp / 'monitor.db'}",
        reference_run=str(run.root),
        detectors=["oov-rate", "text-length-ks"],
        drift_every=100,
        drift_window=100,
        drift_min_interval_s=0,
        flush_interval_s=0.05,
        alerts=[{"metric": "drifted", "op": ">=", "threshold": 1, "window": 100, "cooldown_s": 600}],
    )
    monitor = Monitor(settings, LABELS)
    monitor.start()
    english = [f"{(POS + NEG)[i % 16]}{'!' * (i % 3)}" for i in range(150)]
    chinese = [f"{ZH[i % 8]}{'，真的' * (i % 4)}" for i in range(100)]
    stream = records(english + chinese, t0=time.time() - 600)
    for start in range(0, len(stream), 50):  # the drift check every 100 sees the window at that point
        monitor.record_many(stream[start : start + 50])
        monitor.flush(timeout=30)
    for _ in range(6):
        monitor.record_error("demo", "3", 500)
    app = FastAPI()
    app.include_router(monitor.router(require_predict=require_predict, require_admin=require_admin))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield {"url": f"http://127.0.0.1:{port}", "stream": stream, "monitor": monitor, "tmp": tmp}
    finally:
        server.should_exit = True
        thread.join(10)
        monitor.close()


def test_feedback_route_status_codes_and_error_bodies(served: dict[str, Any]) -> None:
    url, stream = served["url"], served["stream"]
    predict = {"x-role": "predict"}
    with httpx.Client(base_url=url, timeout=10) as client:
        assert (
            client.post("/v1/feedback", json={"prediction_id": stream[0].id, "label": "positive"}).status_code
            == 403
        )
        unknown = client.post(
            "/v1/feedback", json={"prediction_id": "does-not-exist", "label": "positive"}, headers=predict
        )
        bad_label = client.post(
            "/v1/feedback", json={"prediction_id": stream[0].id, "label": "neutral"}, headers=predict
        )
        malformed = client.post("/v1/feedback", json={"prediction_id": stream[0].id}, headers=predict)
        ok = [
            client.post("/v1/feedback", json={"prediction_id": r.id, "label": "negative"}, headers=predict)
            for r in stream[:40]
        ]
        schema = client.get("/openapi.json").json()
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
    assert all(r.status_code == 200 for r in ok)
    assert ok[0].json() == {"prediction_id": stream[0].id, "label": "negative", "correct": True}
    assert ok[1].json()["correct"] is False  # stream[1] was predicted positive
    responses = schema["paths"]["/v1/feedback"]["post"]["responses"]
    assert {"200", "404", "422"} <= set(responses)
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    dashboard = schema["paths"]["/dashboard"]["get"]["responses"]
    assert "text/html" in dashboard["200"]["content"] and "application/json" in dashboard["422"]["content"]


def test_summary_is_admin_only_and_counts_everything(served: dict[str, Any]) -> None:
    with httpx.Client(base_url=served["url"], timeout=10) as client:
        assert client.get("/v1/monitor/summary", headers={"x-role": "predict"}).status_code == 403
        summary = client.get("/v1/monitor/summary", headers={"x-role": "admin"}).json()
    (version,) = summary["models"]
    assert (version["model"], version["version"], version["predictions"]) == ("demo", "3", 250)
    assert summary["store"]["written"] == 250 and summary["store"]["dropped"] == 0
    assert summary["store"]["errors_recorded"] == 6
    assert version["drift"]["drifted"]  # the last window is Chinese, the reference English
    assert [a["status"] for a in summary["alerts"]["recent"]] == ["firing"]


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_dashboard_renders_in_headless_chromium(served: dict[str, Any], tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed (no chromium on PATH, no {CHROMIUM}): apt-get install chromium")
    with httpx.Client(base_url=served["url"], timeout=10) as client:
        assert client.get("/dashboard").status_code == 403
        repeated = client.get(f"/dashboard?token={ADMIN_TOKEN}&model=a&model=b")
        assert repeated.status_code == 422 and repeated.json()["error"]["code"] == "invalid_query"
        assert client.get(f"/dashboard?token={ADMIN_TOKEN}&minutes=-5").status_code == 422
        for r in served["stream"][
            150:200
        ]:  # feedback on the Chinese part too: the accuracy chart gets points
            client.post(
                "/v1/feedback", json={"prediction_id": r.id, "label": "positive"}, headers={"x-role": "admin"}
            )
    page = f"{served['url']}/dashboard?token={ADMIN_TOKEN}&minutes=60"
    dom = _chromium("--dump-dom", page, profile=tmp_path / "profile").stdout
    shot = tmp_path / "dashboard.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,1900", page, profile=tmp_path / "profile")
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
