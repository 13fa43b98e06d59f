"""Errors of the serving layer, each with the HTTP status it maps to."""

from __future__ import annotations

from lmforge.errors import LmforgeError

__all__ = ["ApiError", "ConflictError", "NotFoundError", "ServeError", "overloaded"]


class ServeError(LmforgeError):
    """A registry or serving request that cannot be done as asked (HTTP ``status``)."""

    status = 422
    code = "invalid_request"


class NotFoundError(ServeError):
    """No such model or version (HTTP 404)."""

    status = 404
    code = "not_found"


class ConflictError(ServeError):
    """The request contradicts the registry's state, e.g. a canary of the active version (HTTP 409)."""

    status = 409
    code = "conflict"


class ApiError(Exception):
    """An HTTP error answered with the JSON error body: status, machine code, message, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def overloaded(reason: str, retry_after: int) -> ApiError:
    """The 429 of a server at capacity, with ``Retry-After``: admission and the generation token budget send it."""
    return ApiError(429, "overloaded", f"The server is at capacity ({reason}); retry after {retry_after} s.",
                    {"Retry-After": str(retry_after)})
