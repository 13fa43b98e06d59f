"""``lmforge serve BOTDIR``: ``POST /v1/chat`` (turn numbers, store-backed sessions across a restart on
SQLite and PostgreSQL, keys, limits, metrics), the dashboard's bot card, and the ``/bot`` page in
headless Chromium against a real ``lmforge serve --monitor`` process (and its dashboard).

The tiny bot (``tests/_bot_data.py``) escalates after 2 consecutive out-of-scope turns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests._bot_data import OOS_TEXTS
from tests._chromium import MISSING, Browser, chromium_installed
from tests._postgres import BACKENDS, fresh_postgres_database, server_url
from tests._serve import serve_process
from tests.unit.serve.conftest import settings_for

from lmforge.apps import serving_for
from lmforge.apps.support import REPLY_KEYS, SqlSessions, Turn, next_failures, serving

FAQ_Q = "track my parcel delivery please"
FAQ_A = "Track your parcel on the delivery page."


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("LMFORGE_AUDIT_LOG", "LMFORGE_PUBLIC_KEY", "LMFORGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=BACKENDS)
def registry_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        with fresh_postgres_database(server_url()) as url:
            yield url


def _keys(settings: Any) -> dict[str, str]:
    from lmforge.serve import create_key, open_stores

    with open_stores(settings) as stores:
        predict, _ = create_key(stores, "bot-predict", "predict", actor="tests")
        admin, _ = create_key(stores, "bot-admin", "admin", actor="tests")
    return {"predict": predict, "admin": admin}


def _settings(tiny_bot: Path, state: Path, registry_url: str | None = None, **overrides: Any) -> Any:
    served = serving(tiny_bot)
    assert served is not None
    # The bot's runs are signed (lmforge bot build): served with verification on.
    return settings_for(state, served.source, model_name=served.model_name, allow_unsigned=False,
                        registry_url=registry_url, **overrides)


def _client(tiny_bot: Path, settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    served = serving(tiny_bot)
    assert served is not None
    return TestClient(create_app(settings, [served.extension]), raise_server_exceptions=False)


def test_serving_knows_a_bot_directory_and_nothing_else(tiny_bot: Path, tmp_path: Path) -> None:
    served = serving_for(str(tiny_bot))
    assert served is not None and served.extension.name == "bot"
    assert served.source == tiny_bot / "run" and served.model_name == tiny_bot.name
    assert serving_for(str(tiny_bot / "run")) is None and serving_for(str(tmp_path)) is None


def test_the_failure_rule() -> None:
    assert next_failures(0, True, 2) == (1, False)
    assert next_failures(1, True, 2) == (0, True)  # the 2nd consecutive failure escalates and resets
    assert next_failures(1, False, 2) == (0, False)
    assert next_failures(5, True, 0) == (6, False)  # 0: never escalates


def test_chat_answers_the_faq_with_turn_numbers_keys_limits_and_metrics(tiny_bot: Path, tmp_path: Path) -> None:
    settings = _settings(tiny_bot, tmp_path / "state", limits={"max_text_chars": 60, "max_body_bytes": 2000})
    keys = _keys(settings)
    auth = {"Authorization": f"Bearer {keys['predict']}"}
    with _client(tiny_bot, settings) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        first = client.post("/v1/chat", json={"session_id": "s-1", "text": FAQ_Q}, headers=auth)
        assert first.status_code == 200, first.text
        reply = first.json()
        assert list(reply) == [*REPLY_KEYS, "turn"]
        assert (reply["intent"], reply["answer"], reply["reason"], reply["turn"]) == (
            "delivery", FAQ_A, "answered", 1)
        assert reply["sources"][0]["question"] == FAQ_Q and reply["escalate"] is False
        second = client.post("/v1/chat", json={"session_id": "s-1", "text": "talk to a human agent"}, headers=auth)
        assert (second.json()["turn"], second.json()["escalate"], second.json()["reason"]) == (
            2, True, "escalate_intent")
        other = client.post("/v1/chat", json={"session_id": "s-2", "text": OOS_TEXTS[6]}, headers=auth).json()
        assert (other["turn"], other["out_of_scope"], other["intent"], other["answer"]) == (1, True, None, None)
        # The intent run is served on /v1/predict as well.
        predicted = client.post("/v1/predict", json={"texts": [FAQ_Q]}, headers=auth)
        assert predicted.json()["predictions"][0]["label"] == "delivery"
        assert predicted.json()["model"] == tiny_bot.name

        missing = client.post("/v1/chat", json={"session_id": "s-1", "text": FAQ_Q})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = client.post("/v1/chat", json={"session_id": "s-1", "text": FAQ_Q}, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        too_long = client.post("/v1/chat", json={"session_id": "s-1", "text": "refund " * 10}, headers=auth)
        assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "validation_error"
        assert "text" in too_long.json()["error"]["message"]
        too_big = client.post("/v1/chat", json={"session_id": "s-1", "text": "x" * 3000}, headers=auth)
        assert too_big.status_code == 413 and "error" in too_big.json()
        bad_id = client.post("/v1/chat", json={"session_id": "a b@c", "text": FAQ_Q}, headers=auth)
        assert bad_id.status_code == 422 and "session_id" in bad_id.json()["error"]["message"]

        text = client.get("/metrics", headers=auth).text
        assert 'lmforge_bot_turns_total{outcome="answered"} 1.0' in text
        assert 'lmforge_bot_turns_total{outcome="escalated"} 1.0' in text
        assert 'lmforge_bot_turns_total{outcome="out_of_scope"} 1.0' in text
        assert 'lmforge_bot_escalations_total{reason="escalate_intent"} 1.0' in text
        assert 'lmforge_http_requests_total{method="POST",route="/v1/chat",status="200"} 3.0' in text

        schema = client.get("/openapi.json", headers=auth).json()["paths"]["/v1/chat"]["post"]
        assert schema["tags"] == ["bot"] and "requestBody" in schema

        page = client.get("/bot")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert "http://" not in page.text and "https://" not in page.text  # no CDN, no external asset


def test_a_session_escalates_after_n_failures_across_a_restart(
    tiny_bot: Path, tmp_path: Path, registry_url: str | None
) -> None:
    import sqlalchemy as sa

    settings = _settings(tiny_bot, tmp_path / "state", registry_url)
    auth = {"Authorization": f"Bearer {_keys(settings)['predict']}"}
    email = "jane.doe@example.com"
    with _client(tiny_bot, settings) as client:
        r = client.post("/v1/chat", json={"session_id": "t-9", "text": f"{OOS_TEXTS[7]} {email}"}, headers=auth)
        assert (r.json()["turn"], r.json()["escalate"], r.json()["reason"]) == (1, False, "out_of_scope")
    with _client(tiny_bot, settings) as client:  # a new server on the same registry
        r = client.post("/v1/chat", json={"session_id": "t-9", "text": OOS_TEXTS[8]}, headers=auth)
        assert (r.json()["turn"], r.json()["escalate"], r.json()["reason"]) == (2, True, "repeated_failures")
        r = client.post("/v1/chat", json={"session_id": "t-9", "text": OOS_TEXTS[9]}, headers=auth)
        assert (r.json()["turn"], r.json()["escalate"]) == (3, False)  # the count restarted
    url = registry_url or f"sqlite:///{tmp_path / 'state' / 'registry.db'}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            texts = [row[0] for row in conn.execute(sa.text("SELECT text FROM bot_turns ORDER BY id"))]
            session = conn.execute(sa.text("SELECT turns, failures FROM bot_sessions WHERE session_id='t-9'")).one()
    finally:
        engine.dispose()
    assert len(texts) == 3 and email not in texts[0] and texts[0].startswith(OOS_TEXTS[7])  # stored masked
    assert tuple(session) == (3, 1)


def test_the_dashboard_card_counts_outcomes_from_the_store(tiny_bot: Path, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from lmforge.apps.support import BotExtension

    ext = BotExtension(tiny_bot)
    ext.sessions = SqlSessions(sa.create_engine(f"sqlite:///{tmp_path / 'bot.db'}"))
    assert "no turn yet" in ext.dashboard_card(60)

    def turn(reason: str, escalate: bool) -> Turn:
        return Turn("hi", None, 0.5, reason == "out_of_scope", None, escalate, reason, [], turn=1)

    for reason, escalate in [("answered", False), ("out_of_scope", False), ("repeated_failures", True),
                             ("repeated_failures", True)]:
        ext.sessions.record("s", turn(reason, escalate))
    card = ext.dashboard_card(60)
    assert "4 turns, 2 escalated" in card
    assert '<tr data-reason="repeated_failures"><td>repeated_failures</td><td>2</td><td>2</td></tr>' in card
    assert '<tr data-reason="answered"><td>answered</td><td>1</td><td>0</td></tr>' in card


def _wait_for(browser: Browser, expression: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while browser.eval(expression) is not True:
        assert time.monotonic() < deadline, browser.html()[-2000:]
        time.sleep(0.1)


def test_the_bot_page_answers_and_falls_back_in_chromium(tiny_bot: Path, tmp_path: Path) -> None:
    if not chromium_installed():
        pytest.skip(MISSING)
    from lmforge.guard import trusted_public_key
    from lmforge.serve import ServeSettings

    state = tmp_path / "state"
    tokens = _keys(ServeSettings(state_dir=str(state)))
    public = trusted_public_key()
    assert public is not None
    with serve_process(tmp_path, tiny_bot, "--state", str(state), "--public-key", str(public), "--monitor",
                       config={"registry_poll_s": 0, "monitor": {"detectors": ["prediction-chi2"]}},
                       tokens=tokens) as srv, \
            Browser(tmp_path / "profile") as browser:
        browser.goto(f"{srv.url}/bot")
        browser.type("#key", srv.tokens["predict"])
        browser.type("#question", FAQ_Q)
        browser.eval("document.querySelector('#send').click()")
        _wait_for(browser, "document.querySelectorAll('.bot').length === 1")
        assert browser.eval("document.querySelector('.bot').textContent") == FAQ_A
        assert browser.eval("document.querySelector('.bot').dataset.turn") == "1"
        assert browser.eval("document.querySelector('.sources li').textContent").startswith(FAQ_Q)
        for n, text in enumerate(OOS_TEXTS[6:8], start=2):  # out of scope twice: the fallback, then a person
            browser.type("#question", text)
            browser.eval("document.querySelector('#send').click()")
            _wait_for(browser, f"document.querySelectorAll('.bot').length === {n}")
        fallback = "document.querySelectorAll('.bot')[1]"
        assert browser.eval(f"{fallback}.classList.contains('fallback')") is True
        assert "only answer questions about our service" in browser.eval(f"{fallback}.textContent")
        assert browser.eval("document.querySelectorAll('.escalation').length") == 1
        assert "(repeated_failures)" in browser.eval("document.querySelector('.escalation').textContent")
        # The dashboard (monitoring on) shows the bot's outcomes, read from the registry's database.
        dashboard = httpx.get(f"{srv.url}/dashboard", headers={"Authorization": f"Bearer {tokens['admin']}"},
                              timeout=30)
        assert dashboard.status_code == 200
        assert "<h2>Support bot</h2>" in dashboard.text and "3 turns, 1 escalated" in dashboard.text
        assert "app bot" in srv.output() and "could not record" not in srv.output()


def test_concurrent_steps_of_one_session_never_lose_a_count(tmp_path: Path, registry_url: str | None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lmforge._sql import open_engine

    url = registry_url or f"sqlite:///{tmp_path / 'bot.db'}"
    engine = open_engine(url, what="Test", example="sqlite:///x.db", purpose="tests")
    sessions = SqlSessions(engine)
    try:
        with ThreadPoolExecutor(4) as pool:  # 40 failures of one session from 4 threads, 3 to escalate
            steps = list(pool.map(lambda _: sessions.step("busy", True, 3), range(40)))
    finally:
        engine.dispose()
    assert sorted(s.turn for s in steps) == list(range(1, 41))
    assert sorted(s.turn for s in steps if s.escalate) == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39]
