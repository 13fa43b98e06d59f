"""Pure ASGI middleware: request metrics and the body-size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so neither buffers responses nor runs the app in
another task. The body limit answers 413 from ``Content-Length`` before reading anything,
and for a chunked body stops reading as soon as the limit is passed: a client cannot make
the server hold more than ``max_bytes`` of one request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimitMiddleware", "MetricsMiddleware", "error_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None,
               extra: dict[str, Any] | None = None) -> bytes:
    """The JSON error body every 4xx/5xx carries: ``{"error": {"code", "message"[, "details"]}}``
    (``extra`` adds fields, such as the ``type`` and ``param`` of OpenAI's error shape)."""
    error: dict[str, Any] = {"code": code, "message": message, **(extra or {})}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode("utf-8")


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = error_body(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``, decided before the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"Request body larger than the limit of {self.max_bytes} bytes (limits.max_body_bytes)."
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    await _send_error(send, 400, "bad_request", "Content-Length is not a number.")
                    return
                if too_big:
                    await _send_error(send, 413, "payload_too_large", message)
                    return
        # Chunked (or lying) bodies: read up to the limit here, then hand the app the whole body.
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # client went away before sending the body
                await self.app(scope, _replay([msg], receive), send)
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", message)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        await self.app(
            scope,
            _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive),
            send,
        )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()  # waits for http.disconnect, as the server's receive would

    return replay


class MetricsMiddleware:
    """Counts every HTTP request by route template, method and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Any, routes: Callable[[], list[Any]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and hasattr(route, "path"):
            return str(route.path)
        from starlette.routing import Match

        for candidate in self.routes():  # answered before routing (413): find the template ourselves
            path = getattr(candidate, "path", None)
            if path is None:  # an included router; its routes set scope["route"] when they answer
                continue
            try:
                match, _ = candidate.matches(scope)
            except Exception:  # a route that cannot match this kind of scope
                continue
            if match == Match.FULL:
                return str(path)
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self._route(scope)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
