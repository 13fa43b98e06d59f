"""Kill -TERM a server mid-stream and restart it: every prediction it acknowledged is in the store."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conftest import REPO, cli_env

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

# The writer batches for 60 s, so everything acknowledged is still queued when SIGTERM arrives:
# only the shutdown path (uvicorn -> lifespan -> Monitor.close) can write it.
SERVER = textwrap.dedent("""
    import sys, time
    from contextlib import asynccontextmanager
    import uvicorn
    from fastapi import FastAPI
    from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, new_prediction_id

    db, port = sys.argv[1], int(sys.argv[2])
    monitor = Monitor(MonitorSettings(url=f"sqlite:///{db}", flush_interval_s=60.0, batch_size=100000),
                      ["negative", "positive"])

    @asynccontextmanager
    async def lifespan(app):
        monitor.start()
        yield
        monitor.close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(monitor.router(require_predict=lambda: None, require_admin=lambda: None))

    @app.post("/predict")
    def predict(texts: list[str]) -> list[str]:
        records = [PredictionRecord(id=new_prediction_id(), ts=time.time(), model="m", version="1", text=t,
                                    label="negative", confidence=0.9, scores={"negative": 0.9, "positive": 0.1},
                                    latency_ms=1.0) for t in texts]
        monitor.record_many(records)
        return [r.id for r in records]

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(script: Path, db: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(port)],
        cwd=REPO,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {proc.communicate()[0][-2000:]}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully (lifespan exit included), then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), out[-2000:]
    return out


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_sigterm_flushes_and_restart_keeps_everything(tmp_path: Path) -> None:
    script, db = tmp_path / "server.py", tmp_path / "monitor.db"
    script.write_text(SERVER, encoding="utf-8")
    proc, url = start(script, db, tmp_path)
    try:
        ids = []
        for i in range(3):
            response = httpx.post(f"{url}/predict", json=[f"text {i}-{j}" for j in range(50)], timeout=10)
            ids += response.json()
        assert count(db, "predictions") == 0  # acknowledged, still queued
    finally:
        out = stop(proc)
    assert count(db, "predictions") == 150, out

    proc, url = start(script, db, tmp_path)  # restart on the same database
    try:
        feedback = httpx.post(
            f"{url}/v1/feedback", json={"prediction_id": ids[0], "label": "negative"}, timeout=10
        )
        more = httpx.post(f"{url}/predict", json=[f"after {j}" for j in range(20)], timeout=10).json()
        summary = httpx.get(f"{url}/v1/monitor/summary", timeout=10).json()
    finally:
        stop(proc)
    assert feedback.status_code == 200 and feedback.json()["correct"] is True
    assert summary["models"][0]["predictions"] == 150  # before the second batch was flushed
    assert count(db, "predictions") == 170 and count(db, "feedback") == 1
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM predictions")}
    assert set(ids) | set(more) == stored
    json.dumps(summary)  # the summary is plain JSON
