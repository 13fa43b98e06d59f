"""The FastAPI dependencies through which routes reach an app's state: key checks by role, and the runtime.

The lifespan yields ``runtime`` and ``auth`` as request state; the key checks of one app are
kept on ``app.state.require_predict`` / ``app.state.require_admin``, so a test can replace
them with ``app.dependency_overrides`` (and monitoring's router is mounted behind them).
"""

# No `from __future__ import annotations` here: FastAPI reads the key check's signature at runtime,
# and its security schemes are objects of this app.

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lmforge.serve._auth import Authenticator
from lmforge.serve._errors import ApiError
from lmforge.serve._keys import ApiKey
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._runtime import Runtime

__all__ = ["KeyCheck", "key_checks", "runtime_of"]

KeyCheck = Callable[..., Awaitable[ApiKey]]
"""A dependency that answers the request's API key, or raises :class:`ApiError` 401, 403 or 429."""


def key_checks(metrics: ServeMetrics) -> tuple[KeyCheck, KeyCheck]:
    """``(require_predict, require_admin)`` of one app: authenticate, authorize the role, throttle."""
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key itself")

    def require(role: str) -> KeyCheck:
        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
            x_api_key: Annotated[str | None, Security(api_key_header)],
        ) -> ApiKey:
            auth: Authenticator = request.state.auth
            key = await auth.authenticate(credentials.credentials if credentials is not None else x_api_key)
            auth.authorize(key, role)
            try:
                auth.throttle(key)
            except ApiError:
                metrics.rejected.labels("rate_limited").inc()
                raise
            return key

        dependency.__name__ = f"require_{role}"
        return dependency

    return require("predict"), require("admin")


def runtime_of(request: Request) -> Runtime:
    """The app's runtime, as the lifespan yielded it."""
    runtime: Runtime = request.state.runtime
    return runtime
