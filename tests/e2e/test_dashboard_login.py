"""The dashboard opens in a browser: headless Chromium against a real `lmforge serve RUN --monitor`.

A browser cannot send an ``Authorization`` header, so it logs in: a visit to ``/dashboard`` lands
on the login form, an admin key typed into it opens the dashboard (an ``HttpOnly``,
``SameSite=Strict`` session cookie), a predict key is refused, and "log out" ends the session.
The key never shows up in a URL, a page, the server's log or the audit log.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from tests._chromium import MISSING, Browser, chromium_installed
from tests._runs import NEG, POS, copy_run
from tests._serve import create_keys, serve_process

httpx = pytest.importorskip("httpx")


def wait_for_written(url: str, admin: str, n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = httpx.get(f"{url}/v1/monitor/summary", headers={"X-API-Key": admin}, timeout=10).json()
        if summary["store"]["written"] >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"the monitor wrote {summary['store']['written']} of {n} predictions")


def test_a_browser_logs_in_with_an_admin_key_sees_the_dashboard_and_logs_out(
    trained_full: Path, tmp_path: Path
) -> None:
    if not chromium_installed():
        pytest.skip(MISSING)
    run = copy_run(trained_full, tmp_path / "sentiment").root
    state = tmp_path / "state"
    tokens = create_keys(state)
    config = {"registry_poll_s": 0, "drain_s": 0.2, "monitor": {"url": f"sqlite:///{state / 'monitor.db'}",
                                                                  "flush_interval_s": 0.05}}
    args = ("--monitor", "--allow-unsigned", "--access-log", "--state", str(state))
    pages: list[str] = []
    with serve_process(tmp_path, run, *args, config=config) as srv:
        for _ in range(3):
            reply = httpx.post(f"{srv.url}/v1/predict", json={"texts": POS + NEG},
                               headers={"Authorization": f"Bearer {tokens['predict']}"}, timeout=60)
            assert reply.status_code == 200, reply.text
        wait_for_written(srv.url, tokens["admin"], 48)

        with Browser(tmp_path / "profile") as browser:
            # No key, no session: the dashboard sends a browser to the login form.
            assert browser.goto(f"{srv.url}/dashboard") == f"{srv.url}/login?next=/dashboard"
            pages.append(browser.html())
            assert 'name="api_key"' in pages[-1] and 'type="password"' in pages[-1]

            # A predict key is no way in: the form again, with a message, and no cookie.
            browser.type("#api_key", tokens["predict"])
            assert browser.click("button[type=submit]") == f"{srv.url}/login"
            pages.append(browser.html())
            assert "not an active admin API key" in pages[-1]
            assert not [c for c in browser.cookies() if c["name"] == "lmforge_session"]

            # An admin key opens the dashboard, and the session cookie is out of scripts' and other sites' reach.
            browser.goto(f"{srv.url}/login?next=/dashboard")
            browser.type("#api_key", tokens["admin"])
            assert browser.click("button[type=submit]") == f"{srv.url}/dashboard"
            pages.append(browser.html())
            shot = browser.screenshot(tmp_path / "dashboard-logged-in.png")
            (cookie,) = [c for c in browser.cookies() if c["name"] == "lmforge_session"]
            in_script = browser.eval("document.cookie")
            assert "<title>lmforge monitor</title>" in pages[-1]
            tile = re.search(r'data-tile="predictions">.*?class="v">([^<]+)<', pages[-1], flags=re.S)
            assert tile and tile.group(1) == "48", pages[-1][:2000]
            assert 'data-chart="throughput"' in pages[-1] and 'action="/logout"' in pages[-1]
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
            assert cookie["secure"] is False  # plain http on loopback; Secure is set over https
            assert 3500 < cookie["expires"] - time.time() <= 3600  # auth.session_ttl_s
            assert "lmforge_session" not in in_script

            # Log out: back at the form, and the dashboard asks for a login again.
            assert browser.click("form.logout button") == f"{srv.url}/login"
            assert not [c for c in browser.cookies() if c["name"] == "lmforge_session"]
            assert browser.goto(f"{srv.url}/dashboard") == f"{srv.url}/login?next=/dashboard"
            pages.append(browser.html())
        # The server forgot the session too: the old cookie, replayed, is no way in.
        replay = httpx.get(f"{srv.url}/dashboard", timeout=10,
                           headers={"Accept": "text/html", "Cookie": f"lmforge_session={cookie['value']}"})
        assert replay.status_code == 303 and replay.headers["location"] == "/login?next=/dashboard"
    artifacts = os.environ.get("LMFORGE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "dashboard-logged-in.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    log = srv.output()
    assert "POST /login" in log and "GET /dashboard" in log  # the access log was on
    audit = (state / "audit.jsonl").read_text(encoding="utf-8")
    for token in tokens.values():
        assert token not in log, "an API key in the server's log"
        assert token not in audit, "an API key in the audit log"
        assert not [page for page in pages if token in page], "an API key in a page"
        assert token.split("_", 2)[2] not in log + audit  # not even the secret part
    from lmforge.guard import AuditLog

    sessions = [r for r in AuditLog(state / "audit.jsonl").records() if r["action"].startswith("session.")]
    admin_id = tokens["admin"].split("_")[1]
    assert [(r["action"], r["target"]) for r in sessions] == [
        ("session.login", f"api-key:{admin_id}"),
        ("session.logout", f"api-key:{admin_id}"),
    ]
