"""`lmforge watch serve`: POST /v1/ingest feeding the live watch, GET /v1/watch, the /watch page in Chromium.

The live test scores with the keyword classifier of ``test_watch_replay.py`` (it is the model, not
the code under test: the ingest route, the live windows, the deliveries and the page are) in a
real server (uvicorn on a loopback port, in this process) with a webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests._chromium import MISSING, Browser, chromium_installed
from tests._serve import create_keys, free_port
from tests._wait import wait_until
from tests.unit.apps.test_watch_replay import SENTIMENT, TOPIC, _cfg, _Receiver, _stream
from tests.unit.serve.conftest import settings_for

from lmforge.apps import serving_for
from lmforge.apps.watch import Scorer, WatchExtension, parse_items, replay
from lmforge.errors import ConfigError
from lmforge.guard import IntegrityError


@pytest.fixture(autouse=True)
def _hermetic(_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(_home))
    for name in ("LMFORGE_AUDIT_LOG", "LMFORGE_PUBLIC_KEY", "LMFORGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@contextlib.contextmanager
def _running(settings: Any, ext: WatchExtension) -> Iterator[str]:
    """The app of ``settings`` with ``ext`` under uvicorn on a free loopback port, in a thread of this process."""
    import uvicorn

    from lmforge.serve import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, [ext]), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=30), "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _hours(stream: Path) -> list[list[dict[str, Any]]]:
    """The stream's rows in time order, one list per hour (20 rows each)."""
    rows = sorted((json.loads(x) for x in stream.read_text(encoding="utf-8").splitlines()), key=lambda r: r["time"])
    return [[r for r in rows if r["time"][11:13] == f"{h:02d}"] for h in range(16)]


def test_live_ingest_alerts_when_the_surge_window_closes_like_a_replay(tmp_path: Path, receiver: _Receiver) -> None:
    stream = _stream(tmp_path / "s.jsonl")  # 16 hours of gold and oil texts; gold surges in hour 12
    expected = replay(_cfg(), stream, tmp_path / "replayed.jsonl", scorer=Scorer(SENTIMENT, "Bearish", TOPIC)).alerts
    assert [(a["topic"], a["window_start"]) for a in expected] == [("Gold", "2024-03-04T12:00:00+00:00")]
    state = tmp_path / "state"
    keys = create_keys(state)
    ext = WatchExtension(_cfg(actions=["log", "webhook"], webhook_url=receiver.url), source="s.jsonl",
                         scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    predict = {"Authorization": f"Bearer {keys['predict']}"}
    with _running(settings_for(state, limits={"max_texts": 25, "max_queued_texts": 100}), ext) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/v1/ingest", json={"items": _hours(stream)[0]}).status_code == 401
        assert http.get("/v1/watch").status_code == 401
        assert http.post("/v1/ingest", json={"items": [{"time": 1, "text": "x"}] * 26}, headers=predict
                         ).status_code == 422  # over limits.max_texts
        responses = []
        for hour, rows in enumerate(_hours(stream)):
            if hour == 14:  # one late row (hour 5 closed long ago) and three malformed ones
                rows = [*rows[:2], {"time": "2024-03-04T05:10:00Z", "text": "gold slump"},
                        {"time": "yesterday", "text": "gold"}, {"time": "2024-03-04T14:59:00Z"}, 7, *rows[2:]]
            reply = http.post("/v1/ingest", json={"items": rows}, headers=predict)
            assert reply.status_code == 200, reply.text
            responses.append(reply.json())
        # Hour 12's alert comes back with the batch whose first row (of hour 13) closed it, and no other.
        assert [bool(r["alerts"]) for r in responses] == [h == 13 for h in range(16)]
        assert responses[13]["alerts"] == expected
        assert responses[13] == {"accepted": 20, "late": 0, "malformed": 0, "problems": [], "alerts": expected}
        assert responses[14] == {"accepted": 20, "late": 1, "malformed": 3, "alerts": [], "problems": [
            "items[3] has no parseable timestamp in 'time'", "items[4] has no text in 'text'",
            "items[5] is not an object"]}
        # The webhook received the same alert, as the replay's webhook would.
        assert wait_until(lambda: len(receiver.events) == 1, timeout=10)
        assert {k: receiver.events[0][k] for k in expected[0]} == expected[0]
        assert (receiver.events[0]["status"], receiver.events[0]["rule"]) == ("firing", "watch zscore")

        view = http.get("/v1/watch", headers=predict).json()
        assert view["rows"] == {"accepted": 320, "late": 1, "malformed": 3} and view["alerts"] == expected
        assert sorted(view["topics"]) == ["Gold", "Oil"]
        gold = view["topics"]["Gold"]
        assert len(gold["windows"]) == 15 and gold["alerts"] == 1  # hours 0-14 closed; hour 15 still open
        assert gold["open"] == {"window_start": "2024-03-04T15:00:00+00:00", "window_end": "2024-03-04T16:00:00+00:00",
                                "n": 10, "negative": 1, "negative_share": 0.1, "mean_negative_score": pytest.approx(0.135)}
        surge = gold["windows"][12]
        assert (surge["window_start"], surge["n"], surge["negative"], surge["alert"]) == (
            "2024-03-04T12:00:00+00:00", 10, 8, True)
        assert surge["score"] == pytest.approx(expected[0]["score"]) and surge["baseline"] == pytest.approx(0.1)
        assert [w["alert"] for w in gold["windows"]].count(True) == 1
        metrics = http.get("/metrics", headers=predict).text
        assert 'lmforge_watch_rows_total{outcome="late"} 1.0' in metrics and "lmforge_watch_alerts_total 1.0" in metrics

        page = http.get("/watch", headers=predict)
        assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
        assert "<script" not in page.text and "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        if not chromium_installed():
            pytest.skip(MISSING)
        with Browser(tmp_path / "profile") as browser:
            # No key: the browser is sent to the login form; an admin key brings it back to the page.
            assert browser.goto(f"{url}/watch") == f"{url}/login?next=/watch"
            browser.type("#api_key", keys["admin"])
            assert browser.click("button[type=submit]") == f"{url}/watch"
            assert browser.eval("document.querySelectorAll('svg[data-chart=\"watch-trend\"]').length") == 2
            assert browser.eval("document.querySelectorAll('[data-alert=\"alert\"]').length") == 1
            assert browser.eval("document.querySelector('[data-alert=\"alert\"]').dataset.window") == (
                "2024-03-04T12:00:00+00:00")
            assert browser.eval("document.querySelector('#accepted').textContent") == "320"
            # The page follows the stream: the next batch closes hour 15 and the reloaded page shows it.
            reply = http.post("/v1/ingest", json={"items": [{"time": "2024-03-04T16:00:00Z", "text": "gold"}]},
                              headers=predict)
            assert reply.json()["accepted"] == 1
            browser.goto(f"{url}/watch")
            assert browser.eval("document.querySelector('#accepted').textContent") == "321"
            points = browser.eval("document.querySelector('svg[data-topic=\"Gold\"] polyline')"
                                  ".getAttribute('points').split(' ').length")
            assert points == 16


def test_ingest_items_are_read_with_the_specs_field_names() -> None:
    cfg = _cfg(time_field="published", text_field="headline")
    rows, topics, problems = parse_items(
        [{"published": "04-03-2024", "headline": "gold slump", "topic": " Gold "},
         {"time": "2024-03-04T01:00:00Z", "text": "oil"},  # the default names still work
         {"published": "2024-03-04", "headline": "x" * 11},
         {"published": "2024-03-04", "headline": "ok", "topic": 3}], cfg, max_chars=10)
    assert [(r.time, r.text) for r in rows] == [(1709510400.0, "gold slump"), (1709514000.0, "oil")]
    assert topics == ["Gold", None]
    assert problems == ["items[2] has a text of 11 characters (limits.max_text_chars: 10)",
                        "items[3] has a topic that is not a string of 1 to 100 characters"]


def test_topics_given_with_the_rows_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmforge.apps.watch import _server

    monkeypatch.setattr(_server, "MAX_TOPICS", 2)
    ext = WatchExtension(_cfg(), scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    ext.start(None)  # type: ignore[arg-type]  # a scorer is given: the host's trust policy is not needed
    items = [{"time": 60.0 * i, "text": "gold", "topic": t} for i, t in enumerate(["A", "B", "A", "C", "B"])]
    reply = ext.ingest(items, max_chars=100)
    assert (reply["accepted"], reply["malformed"]) == (4, 1)
    assert reply["problems"] == ["topic 'C' would be one more than the 2 a watch keeps"]
    assert sorted(ext.snapshot()[0]["topics"]) == ["A", "B"]


def test_lmforge_serve_finds_the_watch_behind_a_spec_file_only(tmp_path: Path, trained_full: Path) -> None:
    spec = tmp_path / "watch.yaml"
    spec.write_text(yaml.safe_dump({"watch": {"sentiment_run": str(trained_full), "negative_label": "negative",
                                              "window": "1h", "min_count": 5, "actions": []}}), encoding="utf-8")
    served = serving_for(str(spec))
    assert served is not None and served.source == trained_full and isinstance(served.extension, WatchExtension)
    assert served.extension.cfg.window == "1h"
    other = tmp_path / "serve.yaml"
    other.write_text("port: 9000\n", encoding="utf-8")
    assert serving_for(str(other)) is None and serving_for(str(trained_full)) is None
    assert serving_for(str(tmp_path / "missing.yaml")) is None and serving_for("sqlite:///x.db") is None
    spec.write_text(yaml.safe_dump({"watch": {"negative_label": "negative"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="watch.sentiment_run is required to serve the watch"):
        serving_for(str(spec))


def test_the_served_watch_loads_its_run_with_the_servers_trust_policy(tmp_path: Path, trained_full: Path) -> None:
    """`lmforge serve SPEC`'s pieces: the sentiment run on /v1/predict and the watch scoring with the same run."""
    from fastapi.testclient import TestClient

    from lmforge.apps.watch import watch_served
    from lmforge.serve import create_app

    spec = tmp_path / "watch.yaml"
    spec.write_text(yaml.safe_dump({"watch": {"sentiment_run": str(trained_full), "negative_label": "negative",
                                              "window": "1h", "min_count": 5, "actions": []}}), encoding="utf-8")
    served = watch_served(spec, ["watch.window=30m"])
    state = tmp_path / "state"
    keys = create_keys(state)
    auth = {"Authorization": f"Bearer {keys['predict']}"}
    settings = settings_for(state, served.source)  # allow_unsigned: the fixture's run is unsigned
    with TestClient(create_app(settings, [served.extension]), raise_server_exceptions=False) as client:
        predicted = client.post("/v1/predict", json={"texts": ["great", "awful"]}, headers=auth).json()
        reply = client.post("/v1/ingest", json={"items": [{"time": "2024-03-04T00:10:00Z", "text": "great"},
                                                          {"time": "2024-03-04T00:20:00Z", "text": "awful"}]},
                            headers=auth).json()
        view = client.get("/v1/watch", headers=auth).json()
    assert reply == {"accepted": 2, "late": 0, "malformed": 0, "problems": [], "alerts": []}
    negatives = sum(p["label"] == "negative" for p in predicted["predictions"])
    assert view["window"] == "30m" and view["topics"]["all"]["open"]["negative"] == negatives
    assert view["topics"]["all"]["open"]["window_start"] == "2024-03-04T00:00:00+00:00"

    unsigned = settings_for(tmp_path / "state2", allow_unsigned=False)
    with pytest.raises(IntegrityError, match=str(trained_full)), \
            TestClient(create_app(unsigned, [watch_served(spec).extension]), raise_server_exceptions=True):
        time.sleep(0)  # never reached: the lifespan refuses the unsigned run before the app serves
