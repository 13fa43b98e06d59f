"""The dashboard's browser login: the session store (expiry, logout, bound), the throttle, the open-redirect
and CSRF checks, and the login routes of a real app in process (what the cookie opens, and what it does not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._serve import create_keys
from tests.unit.serve.conftest import settings_for

from lmforge.serve._sessions import LoginThrottle, SessionStore, local_path, same_origin

pytest.importorskip("fastapi")  # the app tests below; the store and the checks are standard library


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the session store -----------------------------------------------------------------------------
def test_a_session_lasts_its_ttl_then_is_gone() -> None:
    clock = Clock()
    store = SessionStore(ttl_s=60, max_sessions=10, clock=clock)
    token = store.create("abc123abc123", "ops")
    session = store.get(token)
    assert session is not None and (session.key_id, session.key_name) == ("abc123abc123", "ops")
    assert token not in repr(store._sessions)  # only its digest is kept
    clock.now += 59.9
    assert store.get(token) is not None
    clock.now += 0.2
    assert store.get(token) is None and len(store) == 0


def test_logout_ends_only_that_session() -> None:
    store = SessionStore(ttl_s=60, max_sessions=10, clock=Clock())
    a, b = store.create("k1", "one"), store.create("k1", "one")
    ended = store.end(a)
    assert ended is not None and ended.key_id == "k1"
    assert store.get(a) is None and store.get(b) is not None
    assert store.end(a) is None  # twice: nothing left to end
    assert store.end(None) is None and store.end("not-a-session") is None


def test_the_store_is_bounded_and_drops_the_oldest_login() -> None:
    clock = Clock()
    store = SessionStore(ttl_s=60, max_sessions=3, clock=clock)
    tokens = []
    for i in range(5):
        tokens.append(store.create(f"k{i}", "n"))
        clock.now += 1
    assert len(store) == 3
    assert [store.get(t) is not None for t in tokens] == [False, False, True, True, True]


def test_expired_sessions_are_purged_on_login_and_keys_can_be_logged_out_everywhere() -> None:
    clock = Clock()
    store = SessionStore(ttl_s=10, max_sessions=100, clock=clock)
    for _ in range(20):
        store.create("old", "n")
    clock.now += 11
    keep = store.create("k2", "n")
    store.create("k3", "n")
    store.create("k3", "n")
    assert len(store) == 3  # the 20 expired ones went with the first new login
    assert store.end_key("k3") == 2 and len(store) == 1 and store.get(keep) is not None


def test_malformed_session_ids_are_refused_without_work() -> None:
    store = SessionStore(ttl_s=10, max_sessions=10)
    assert store.get("") is None and store.get("x" * 10_000) is None


def test_login_attempts_are_throttled_per_client() -> None:
    throttle = LoginThrottle(per_minute=3)
    assert [throttle.take("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    wait = throttle.take("10.0.0.1")
    assert 1 <= wait <= 20  # one attempt back every 20 s
    assert throttle.take("10.0.0.2") == 0  # another client is not held back


# -- the open-redirect and CSRF checks --------------------------------------------------------------
@pytest.mark.parametrize("value", ["/dashboard", "/dashboard?minutes=15", "/v1/models", "/a/b%2Fc"])
def test_a_local_path_is_kept(value: str) -> None:
    assert local_path(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "dashboard",
        "https://evil.example/",
        "//evil.example/dashboard",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " /dashboard",
        "javascript:alert(1)",
        "http:/evil.example",
        "/" + "a" * 600,
    ],
)
def test_anything_else_is_replaced_by_the_dashboard(value: str | None) -> None:
    assert local_path(value) == "/dashboard"


@pytest.mark.parametrize(
    ("host", "origin", "referer"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000", None),
        ("monitor.example.com", "https://monitor.example.com", None),
        ("monitor.example.com", "https://monitor.example.com:443", None),  # default port
        ("Monitor.Example.com:8443", "https://monitor.example.com:8443", None),
        ("127.0.0.1:8000", None, "http://127.0.0.1:8000/login?next=/dashboard"),  # no Origin: the Referer
    ],
)
def test_a_post_from_this_server_passes(host: str, origin: str | None, referer: str | None) -> None:
    assert same_origin(host, origin, referer)


@pytest.mark.parametrize(
    ("host", "origin", "referer"),
    [
        ("127.0.0.1:8000", "http://evil.example", None),
        ("127.0.0.1:8000", "http://127.0.0.1:8001", None),  # another port is another origin
        ("127.0.0.1:8000", "null", "http://127.0.0.1:8000/login"),  # Origin wins, and null is refused
        ("127.0.0.1:8000", "http://evil.example", "http://127.0.0.1:8000/login"),
        ("127.0.0.1:8000", None, "http://evil.example/127.0.0.1:8000"),
        ("127.0.0.1:8000", None, None),  # neither header: refused
        ("127.0.0.1:8000", "file://", None),
        (None, "http://127.0.0.1:8000", None),
        ("monitor.example.com", "https://monitor.example.com.evil.example", None),
    ],
)
def test_a_post_from_anywhere_else_is_refused(host: str | None, origin: str | None, referer: str | None) -> None:
    assert not same_origin(host, origin, referer)


# -- the routes, in a real app -----------------------------------------------------------------------
ORIGIN = {"Origin": "http://testserver"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture(scope="module")
def app_client(serve_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from lmforge.monitor import MonitorSettings
    from lmforge.serve import create_app

    state = tmp_path_factory.mktemp("login") / "state"
    tokens = create_keys(state)
    settings = settings_for(state, serve_run, model_name="sentiment")
    settings.monitor = MonitorSettings(url=f"sqlite:///{state}/monitor.db", text_policy="none", drift_every=10**6)
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as client:
        yield {"client": client, "tokens": tokens, "state": state}


def login(client: Any, token: str, next_path: str = "/dashboard", headers: dict[str, str] = ORIGIN) -> Any:
    return client.post("/login", data={"api_key": token, "next": next_path}, headers=headers)


def test_a_browser_is_sent_to_the_login_form_and_an_api_client_gets_json(app_client: dict[str, Any]) -> None:
    client = app_client["client"]
    client.cookies.clear()
    browser = client.get("/dashboard?minutes=15", headers=HTML)
    assert browser.status_code == 303 and browser.headers["location"] == "/login?next=/dashboard"
    api = client.get("/dashboard", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.json()["error"]["code"] == "unauthorized"
    form = client.get("/login?next=//evil.example/x")
    assert form.status_code == 200 and 'name="next" value="/dashboard"' in form.text
    assert "evil.example" not in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]
    assert "<script" not in form.text and "http" not in form.text.split("<body>")[1]


def test_login_sets_a_strict_http_only_cookie_that_opens_the_dashboard_only(app_client: dict[str, Any]) -> None:
    client, tokens = app_client["client"], app_client["tokens"]
    client.cookies.clear()
    reply = login(client, tokens["admin"], "/dashboard?minutes=15")
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard?minutes=15"
    cookie = reply.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes  # plain http here
    assert "samesite=strict" in cookie.lower() and "max-age=3600" in cookie.lower()
    assert tokens["admin"] not in cookie and tokens["admin"] not in reply.text
    page = client.get("/dashboard", headers=HTML)
    assert page.status_code == 200 and "lmforge monitor" in page.text and 'action="/logout"' in page.text
    # The cookie is no key: no other route takes it, reads and state-changing routes alike.
    assert client.get("/v1/monitor/summary").status_code == 401
    assert client.get("/v1/models", headers=HTML).status_code == 401
    assert client.post("/v1/models/sentiment/rollback", headers=ORIGIN).status_code == 401
    assert client.post("/v1/predict", json={"texts": ["hi"]}).status_code == 401


def test_wrong_and_non_admin_keys_get_the_form_again_without_the_key(app_client: dict[str, Any]) -> None:
    client, tokens = app_client["client"], app_client["tokens"]
    client.cookies.clear()
    for token in (tokens["predict"], tokens["admin"][:-4] + "AAAA", "not a key at all"):
        reply = login(client, token)
        assert reply.status_code == 401 and "not an active admin API key" in reply.text
        assert token not in reply.text and "set-cookie" not in reply.headers
    assert client.get("/dashboard", headers=HTML).status_code == 303


def test_forms_posted_from_another_site_are_refused(app_client: dict[str, Any]) -> None:
    client, tokens = app_client["client"], app_client["tokens"]
    client.cookies.clear()
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/"}):
        reply = login(client, tokens["admin"], headers=headers)
        assert reply.status_code == 403 and "set-cookie" not in reply.headers, headers
    assert login(client, tokens["admin"]).status_code == 303
    assert client.post("/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/dashboard", headers=HTML).status_code == 200  # the forged logout did nothing


def test_logout_ends_the_session_on_the_server_and_in_the_browser(app_client: dict[str, Any]) -> None:
    from lmforge.guard import AuditLog

    client, tokens, state = app_client["client"], app_client["tokens"], app_client["state"]
    client.cookies.clear()
    login(client, tokens["admin"])
    stolen = client.cookies.get("lmforge_session")
    reply = client.post("/logout", headers=ORIGIN)
    assert reply.status_code == 303 and reply.headers["location"] == "/login"
    assert 'lmforge_session=""' in reply.headers["set-cookie"] and "max-age=0" in reply.headers["set-cookie"].lower()
    assert client.get("/dashboard", headers=HTML).status_code == 303
    # A copy of the cookie taken before the logout is worthless: the server forgot the session.
    replay = client.get("/dashboard", headers={**HTML, "Cookie": f"lmforge_session={stolen}"})
    assert replay.status_code == 303
    records = [r for r in AuditLog(state / "audit.jsonl").records() if r["action"].startswith("session.")]
    assert [r["action"] for r in records[-2:]] == ["session.login", "session.logout"]
    key_id = tokens["admin"].split("_")[1]
    assert all(r["target"] == f"api-key:{key_id}" for r in records)
    assert tokens["admin"] not in (state / "audit.jsonl").read_text(encoding="utf-8")


def test_a_revoked_key_ends_its_sessions(app_client: dict[str, Any], tmp_path: Path) -> None:
    from lmforge.serve import ServeSettings, create_key, open_stores, revoke_key

    client, state = app_client["client"], app_client["state"]
    client.cookies.clear()
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        token, key = create_key(stores, "short-lived", "admin", actor="tests")
    assert login(client, token).status_code == 303
    assert client.get("/dashboard", headers=HTML).status_code == 200
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        revoke_key(stores, key.key_id, actor="tests")
    assert client.get("/dashboard", headers=HTML).status_code == 303


def test_the_login_form_is_rate_limited_per_client(app_client: dict[str, Any]) -> None:
    client = app_client["client"]
    client.cookies.clear()
    statuses = [login(client, "lmf_000000000000_" + "A" * 43).status_code for _ in range(12)]
    assert statuses[-1] == 429 and set(statuses) <= {401, 429}, statuses
    limited = login(client, "anything")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
