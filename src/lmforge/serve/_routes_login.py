"""The dashboard's login: ``GET /login`` (the form), ``POST /login`` (an admin key for a session cookie),
``POST /logout``.

The form posts the key in the request body, never in a URL; the answer is a 303 to the page the
browser asked for (``next``, a local path only) with the session cookie: ``HttpOnly`` (no script
reads it), ``SameSite=Strict`` (no other site's page makes the browser send it), ``Path=/``,
``Max-Age`` of ``auth.session_ttl_s``, and ``Secure`` when the request came over https. A wrong,
revoked or non-admin key gets the form again with 401 and a message that does not repeat the key.

CSRF: the cookie opens nothing that changes state (see ``_sessions``), and both forms check that
the post comes from this server's own page (``Origin``, else ``Referer``, against ``Host``) on top
of ``SameSite=Strict``. That needs no token, and so no state before a login: a double-submit token
would need a cookie set before the key is known. Login attempts are throttled per client address.
Logins and logouts are audit events (``session.login`` / ``session.logout``) naming the key by id.
These pages are for people, not API clients, so they are left out of the OpenAPI schema.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

import asyncio
import logging
import math
from html import escape
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lmforge.serve._auth import Authenticator
from lmforge.serve._dependencies import runtime_of
from lmforge.serve._errors import ApiError
from lmforge.serve._keys import ApiKey
from lmforge.serve._sessions import (
    COOKIE_NAME,
    LoginRequired,
    LoginThrottle,
    SessionStore,
    local_path,
    same_origin,
)
from lmforge.serve._settings import ServeSettings

__all__ = ["PAGE_HEADERS", "login_page", "login_redirect", "login_router"]

log = logging.getLogger("lmforge.serve")

_FORM_BYTES = 4096  # a form holds one key and one path; anything larger is not our form
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Nothing but the inline style; the form posts only here; no framing (clickjacking).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it a browser sends `Origin: null` on the form's post, which the CSRF check refuses.
    "Referrer-Policy": "same-origin",
}
_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111827}
header{background:#111827;color:#f9fafb;padding:12px 24px} header h1{font-size:18px;margin:0}
main{max-width:420px;margin:48px auto;background:#fff;border-radius:8px;padding:24px;box-shadow:0 1px 2px #0001}
label{display:block;font-weight:600;margin-bottom:4px} input[type=password]{width:100%;box-sizing:border-box;
padding:8px;font:14px ui-monospace,monospace;border:1px solid #d1d5db;border-radius:6px}
button{margin-top:12px;padding:8px 16px;border:0;border-radius:6px;background:#111827;color:#fff;font-size:14px}
.message{background:#fef2f2;border-left:4px solid #dc2626;padding:8px 12px;margin-bottom:12px}
.hint{color:#6b7280;font-size:13px} code{font-size:13px}
"""


def login_page(next_path: str, message: str | None = None) -> str:
    """The login form (self-contained: inline CSS, no script, nothing fetched from anywhere)."""
    note = f'<p class="message" role="alert">{escape(message)}</p>' if message else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>lmforge monitor: log in</title><style>{_CSS}</style></head><body>"
        "<header><h1>lmforge monitor</h1></header><main><h2>Log in</h2>"
        f'{note}<form method="post" action="/login" autocomplete="off">'
        '<label for="api_key">Admin API key</label>'
        '<input id="api_key" name="api_key" type="password" required autofocus spellcheck="false">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<button type="submit">Log in</button></form>'
        '<p class="hint">An admin key opens the dashboard in this browser until you log out or the session '
        "expires; the key itself is not kept. Create one with <code>lmforge keys create NAME --role admin</code>.</p>"
        "</main></body></html>"
    )


def _page(status: int, next_path: str, message: str | None = None, headers: dict[str, str] | None = None
          ) -> HTMLResponse:
    return HTMLResponse(login_page(next_path, message), status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


async def login_redirect(_: Request, exc: Exception) -> Response:
    """The exception handler of :class:`LoginRequired`: 303 to the login form, coming back to the page."""
    next_path = local_path(exc.next_path if isinstance(exc, LoginRequired) else None)
    return RedirectResponse(f"/login?next={quote(next_path, safe='/')}", status_code=303, headers=PAGE_HEADERS)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _from_this_server(request: Request) -> bool:
    h = request.headers
    return same_origin(h.get("host"), h.get("origin"), h.get("referer"))


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small URL-encoded form (empty for anything else); the first value of each."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type != "application/x-www-form-urlencoded" or len(body) > _FORM_BYTES:
        return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


async def _audit(request: Request, action: str, key_id: str, key_name: str) -> None:
    audit = runtime_of(request).registry.audit
    if audit is not None:
        details = {"name": key_name, "client": _client(request)}
        await asyncio.to_thread(audit.append, f"api-key:{key_id} ({key_name})", action, f"api-key:{key_id}", details)


def login_router(settings: ServeSettings, sessions: SessionStore, throttle: LoginThrottle) -> APIRouter:
    """``/login`` and ``/logout`` of one app, over its session store and login throttle."""
    router = APIRouter(include_in_schema=False)
    ttl = settings.auth.session_ttl_s

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return _page(200, local_path(request.query_params.get("next")))

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not _from_this_server(request):
            return _page(403, local_path(None), "Log in from this server's own login page.")
        wait = throttle.take(_client(request))
        if wait:
            return _page(429, local_path(None), f"Too many login attempts; try again in {wait} s.",
                         {"Retry-After": str(wait)})
        form = await _form(request)
        next_path = local_path(form.get("next"))
        auth: Authenticator = request.state.auth
        try:
            key: ApiKey = await auth.authenticate(form.get("api_key", "").strip() or None)
            auth.authorize(key, "admin")
        except ApiError as exc:  # its message names a key by id at most, never the token
            log.warning("dashboard login refused from %s: %s", _client(request), exc.message)
            return _page(401, next_path, "That is not an active admin API key.")
        token = sessions.create(key.key_id, key.name)
        await _audit(request, "session.login", key.key_id, key.name)
        log.info("dashboard login: API key %s (%s)", key.key_id, key.name)
        response = RedirectResponse(next_path, status_code=303, headers=PAGE_HEADERS)
        response.set_cookie(
            COOKIE_NAME, token, max_age=max(1, math.ceil(ttl)), path="/", secure=request.url.scheme == "https",
            httponly=True, samesite="strict",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        if not _from_this_server(request):
            return _page(403, local_path(None), "Log out from this server's own dashboard.")
        session = sessions.end(request.cookies.get(COOKIE_NAME))
        if session is not None:
            await _audit(request, "session.logout", session.key_id, session.key_name)
            log.info("dashboard logout: API key %s (%s)", session.key_id, session.key_name)
        response = RedirectResponse("/login", status_code=303, headers=PAGE_HEADERS)
        response.delete_cookie(
            COOKIE_NAME, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
        )
        return response

    return router
