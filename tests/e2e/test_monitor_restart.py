"""Kill -TERM a real `lmforge serve RUN --monitor` mid-stream and restart it: every prediction it
acknowledged is in the store, and the restarted server takes feedback on them."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from tests._runs import copy_run
from tests._serve import create_keys, serve_process

httpx = pytest.importorskip("httpx")


def config(state: Path) -> dict[str, object]:
    # The writer batches for 60 s, so everything acknowledged is still queued when SIGTERM arrives:
    # only the shutdown path (uvicorn -> lifespan -> Monitor.close) can write it.
    return {
        "registry_poll_s": 0,
        "drain_s": 1.0,  # requests keep coming, and are answered, while /readyz says 503
        "monitor": {
            "url": f"sqlite:///{state / 'monitor.db'}",
            "flush_interval_s": 60.0,
            "batch_size": 100000,
            "drift_every": 10**6,
        },
    }


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


class Stream(threading.Thread):
    """Predict requests of 10 texts, back to back on one connection, until the server stops answering."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.acknowledged: list[tuple[str, str]] = []  # (prediction id, label) of every 200 received
        self.requests = 0
        self.refused: list[int] = []
        self.started_answering = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token}"}) as c:
            for i in range(5000):
                try:
                    reply = c.post("/v1/predict", json={"texts": [f"text {i}-{j}" for j in range(10)]})
                except httpx.TransportError:  # the listener closed: the stream ends here
                    return
                if reply.status_code != 200:
                    self.refused.append(reply.status_code)
                    return
                self.acknowledged += [(p["prediction_id"], p["label"]) for p in reply.json()["predictions"]]
                self.requests += 1
                if self.requests >= 3:
                    self.started_answering.set()


def test_sigterm_flushes_and_restart_keeps_everything(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "sentiment").root
    state, db = tmp_path / "state", tmp_path / "state" / "monitor.db"
    tokens = create_keys(state)
    args = ("--monitor", "--allow-unsigned", "--state", str(state))
    with serve_process(tmp_path, run, *args, config=config(state)) as srv:
        stream = Stream(srv.url, tokens["predict"])
        stream.start()
        assert stream.started_answering.wait(60), srv.output()[-3000:]
        assert count(db, "predictions") == 0  # acknowledged, still queued
        before = stream.requests
        code = srv.stop()  # SIGTERM while the stream is running
        stream.join(60)
    assert code == 0, srv.output()[-3000:]
    assert not stream.is_alive() and not stream.refused, stream.refused
    assert stream.requests > before  # answered during the drain too: it really was mid-stream
    acknowledged = dict(stream.acknowledged)
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM predictions")}
    assert stored == set(acknowledged), (len(stored), len(acknowledged))
    assert count(db, "predictions") == 10 * stream.requests

    first_id, first_label = stream.acknowledged[0]
    with serve_process(tmp_path, run, *args, config=config(state)) as srv:  # restart on the same database
        predict = {"Authorization": f"Bearer {tokens['predict']}"}
        feedback = httpx.post(
            f"{srv.url}/v1/feedback", json={"prediction_id": first_id, "label": first_label}, headers=predict,
            timeout=10,
        )
        reply = httpx.post(f"{srv.url}/v1/predict", json={"texts": [f"after {j}" for j in range(20)]},
                           headers=predict, timeout=30)
        more = [p["prediction_id"] for p in reply.json()["predictions"]]
        summary = httpx.get(
            f"{srv.url}/v1/monitor/summary", headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=10
        ).json()
        code = srv.stop()
    assert code == 0, srv.output()[-3000:]
    assert feedback.status_code == 200 and feedback.json()["correct"] is True, feedback.text
    assert summary["models"][0]["predictions"] == len(acknowledged)  # before the second batch was flushed
    assert count(db, "predictions") == len(acknowledged) + 20 and count(db, "feedback") == 1
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM predictions")}
    assert set(acknowledged) | set(more) == stored
    json.dumps(summary)  # the summary is plain JSON
