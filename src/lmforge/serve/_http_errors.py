"""JSON error bodies: the app's exception handlers, and how routes document the errors they answer.

Every error, 4xx and 5xx, has the body ``{"error": {"code", "message"[, "details"]}}``,
FastAPI's validation errors and unknown routes included. Validation details never echo the
input (it may hold texts), and a limit's message names the setting behind it.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.errors import LmforgeError, MissingExtraError
from lmforge.serve._errors import ApiError, ServeError
from lmforge.serve._middleware import error_body
from lmforge.serve._schemas import ErrorResponse
from lmforge.serve._settings import ServeSettings

__all__ = [
    "ADMIN_ERRORS",
    "AUTH_ERRORS",
    "BODY_ERRORS",
    "OPENAI_ROUTES",
    "add_error_handlers",
    "json_error",
    "json_responses",
    "responses",
]

log = logging.getLogger("lmforge.serve")

AUTH_ERRORS = (401, 429)
"""What a route behind a key of any role may answer before it runs."""
ADMIN_ERRORS = (401, 403, 429)
"""What a route behind an admin key may answer before it runs."""
BODY_ERRORS = (400, 413, 415, 422)
"""What a route with a JSON body may answer for the body."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}
_WHY = {
    400: "Malformed request (e.g. the body is not valid JSON).",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key lacks the role this route needs.",
    404: "No such model or version.",
    409: "The request contradicts the registry's state.",
    413: "Request body over the configured limit.",
    415: "The body is not sent as JSON (Content-Type: application/json).",
    422: "Invalid request: the message names the field and the limit.",
    429: "Rate limit or capacity reached; retry after the Retry-After header's seconds.",
    500: "The model failed on this request.",
    501: "This server cannot do it (e.g. explanations on the Ray backend, or of a generative model).",
    503: "Not ready, draining, or the request's deadline passed while it was queued (Retry-After).",
    504: "The request's deadline passed during inference.",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that answers ``codes`` with the JSON error body."""
    return {code: {"model": ErrorResponse, "description": _WHY[code]} for code in codes}


def json_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Like :func:`responses`, spelled out as JSON: with ``model``, FastAPI would document them in the
    route's own media type (text/html for the dashboard)."""
    ref = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
    return {code: {"description": _WHY[code], "content": {"application/json": ref}} for code in codes}


OPENAI_ROUTES = ("/v1/chat/",)
"""Path prefixes whose errors also carry OpenAI's ``type`` and ``param``, so OpenAI clients read them."""
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 429: "rate_limit_error"}


def _openai_fields(request: Request | None, status: int) -> dict[str, Any] | None:
    if request is None or not request.url.path.startswith(OPENAI_ROUTES):
        return None
    kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"type": kind, "param": None}


def json_error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> Response:
    """A response with the JSON error body (in OpenAI's shape too on :data:`OPENAI_ROUTES`)."""
    return Response(
        error_body(code, message, details, _openai_fields(request, status)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def add_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    """Answer every exception with the JSON error body (the status is the exception's)."""
    limits = settings.limits

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return json_error(exc.status, exc.code, exc.message, headers=exc.headers, request=request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return json_error(
            exc.status_code,
            _CODES.get(exc.status_code, "error"),
            message,
            headers=getattr(exc, "headers", None),
            request=request,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        content_type = request.headers.get("content-type", "")
        if (
            any(tuple(e.get("loc", ())) == ("body",) for e in errors)
            and request.method in ("POST", "PUT")
            and "json" not in content_type.lower()
        ):
            return json_error(
                415,
                "unsupported_media_type",
                f"Send the body as JSON with 'Content-Type: application/json' (got {content_type[:60]!r}).",
            )
        details: list[dict[str, Any]] = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "type": str(e.get("type", "")),
                "msg": str(e.get("msg", "")),
            }
            for e in errors
        ]  # never the input: it may hold texts
        if any(e.get("type") == "json_invalid" for e in errors):
            return json_error(400, "invalid_json", "The request body is not valid JSON.", details, request=request)
        for d in details:  # name the setting behind a limit, so the message says what to change
            if d["loc"][:2] == ["body", "texts"] and d["type"] == "too_long" and len(d["loc"]) == 2:
                d["msg"] += f" (limits.max_texts = {limits.max_texts} texts per request)"
            elif d["loc"][:2] == ["body", "texts"] and d["type"] == "string_too_long":
                d["msg"] += f" (limits.max_text_chars = {limits.max_text_chars} characters per text)"
        message = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])
        return json_error(422, "validation_error", message or "Invalid request.", details, request=request)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> Response:
        return json_error(exc.status, exc.code, str(exc), request=request)

    @app.exception_handler(LmforgeError)
    async def lmforge_error(request: Request, exc: LmforgeError) -> Response:
        if isinstance(exc, MissingExtraError):
            log.error("%s", exc)
            return json_error(500, "internal_error", str(exc), request=request)
        return json_error(422, "invalid_request", str(exc), request=request)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # The traceback without the exception's message: a message may quote a request text.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("internal error: %s\n%s", type(exc).__name__, frames)
        return json_error(500, "internal_error", "Internal server error; the server log has the details.",
                          request=request)
