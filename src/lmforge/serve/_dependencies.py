"""The FastAPI dependencies through which routes reach an app's state: key checks by role, and the runtime.

The lifespan yields ``runtime`` and ``auth`` as request state; the key checks of one app are
kept on ``app.state.require_predict`` / ``app.state.require_admin``, so a test can replace
them with ``app.dependency_overrides`` (and monitoring's router is mounted behind them).

A key comes from the ``Authorization: Bearer`` or ``X-API-Key`` header. Only on a GET of one of
:data:`~lmforge.serve._sessions.SESSION_ROUTES` (the dashboard) does ``require_admin`` also take
the browser session cookie of ``POST /login``; a browser that has neither is sent to the login
form (303), while an API client keeps the JSON 401. :func:`page_check` is the same for an
extension's pages (a ``predict`` key, or an admin's session on any GET it guards).
"""

# No `from __future__ import annotations` here: FastAPI reads the key check's signature at runtime,
# and its security schemes are objects of this app.

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lmforge.serve._auth import Authenticator
from lmforge.serve._errors import ApiError
from lmforge.serve._keys import ApiKey, role_allows
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._runtime import Runtime
from lmforge.serve._sessions import COOKIE_NAME, SESSION_ROUTES, LoginRequired, SessionStore

__all__ = ["KeyCheck", "key_checks", "page_check", "runtime_of", "session_key"]

log = logging.getLogger("lmforge.serve")

KeyCheck = Callable[..., Awaitable[ApiKey]]
"""A dependency that answers the request's API key, or raises :class:`ApiError` 401, 403 or 429."""


def key_checks(metrics: ServeMetrics, sessions: SessionStore | None = None) -> tuple[KeyCheck, KeyCheck]:
    """``(require_predict, require_admin)`` of one app: authenticate, authorize the role, throttle.

    With ``sessions``, ``require_admin`` also accepts a session cookie on a GET of a session route.
    """
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key itself")

    def require(role: str) -> KeyCheck:
        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
            x_api_key: Annotated[str | None, Security(api_key_header)],
        ) -> ApiKey:
            auth: Authenticator = request.state.auth
            token = credentials.credentials if credentials is not None else x_api_key
            if not token and role == "admin" and sessions is not None and _session_route(request):
                key = await session_key(request, sessions)
                if key is None and "text/html" in request.headers.get("accept", ""):
                    raise LoginRequired(request.url.path)  # a browser: to the login form, then back here
                if key is not None:
                    return _throttled(auth, key, metrics)
            key = await auth.authenticate(token)
            auth.authorize(key, role)
            return _throttled(auth, key, metrics)

        dependency.__name__ = f"require_{role}"
        return dependency

    return require("predict"), require("admin")


def page_check(metrics: ServeMetrics, sessions: SessionStore) -> KeyCheck:
    """The key check of an extension's pages: a ``predict`` key from the headers, or on a GET without
    one the admin key behind the request's session cookie; a browser with neither goes to the login form.

    The cookie opens only GETs (which change nothing), as on the dashboard, so it adds no CSRF surface.
    """
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key itself")

    async def require_page(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        x_api_key: Annotated[str | None, Security(api_key_header)],
    ) -> ApiKey:
        auth: Authenticator = request.state.auth
        token = credentials.credentials if credentials is not None else x_api_key
        if not token and request.method == "GET":
            key = await session_key(request, sessions)
            if key is not None:
                return _throttled(auth, key, metrics)
            if "text/html" in request.headers.get("accept", ""):
                raise LoginRequired(request.url.path)
        key = await auth.authenticate(token)
        auth.authorize(key, "predict")
        return _throttled(auth, key, metrics)

    return require_page


def _session_route(request: Request) -> bool:
    """Whether the request is one a session cookie may open: a GET of a session route."""
    route = request.scope.get("route")
    return request.method == "GET" and getattr(route, "path", None) in SESSION_ROUTES


async def session_key(request: Request, sessions: SessionStore) -> ApiKey | None:
    """The admin key behind the request's session cookie, or None (no cookie, or a session that ended).

    The key is read from the database at every use (not from the key cache), so revoking it or
    taking its admin role ends its sessions at once.
    """
    session = sessions.get(request.cookies.get(COOKIE_NAME))
    if session is None:
        return None
    found = await asyncio.to_thread(runtime_of(request).keys.lookup, session.key_id)
    key = found[0] if found is not None else None
    if key is None or not key.active or not role_allows(key.role, "admin"):
        ended = sessions.end_key(session.key_id)
        log.info("ended %d dashboard session(s) of API key %s: it is revoked or no longer admin",
                 ended, session.key_id)
        return None
    return key


def _throttled(auth: Authenticator, key: ApiKey, metrics: ServeMetrics) -> ApiKey:
    try:
        auth.throttle(key)
    except ApiError:
        metrics.rejected.labels("rate_limited").inc()
        raise
    return key


def runtime_of(request: Request) -> Runtime:
    """The app's runtime, as the lifespan yielded it."""
    runtime: Runtime = request.state.runtime
    return runtime
