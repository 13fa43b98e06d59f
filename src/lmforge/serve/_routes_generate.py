"""The generation routes: ``POST /v1/generate`` and OpenAI's ``POST /v1/chat/completions``, plain or streamed.

Both run on the model's decode scheduler (:mod:`lmforge.serve._decode`) after the token budget
admitted them (:mod:`lmforge.serve._generation`). A stream is server-sent events, one
``data: {json}`` per text delta, ending with ``data: [DONE]``; the chat route's events are
OpenAI's ``chat.completion.chunk`` objects, so the official ``openai`` client streams from it.
When the client goes away (a stream's write fails, or a plain request sees the disconnect)
the sequence is cancelled and its tokens and batch place are freed at once. Prompts and
answers are never logged; with monitoring on, each finished answer goes to the monitor store
(prompt and answer PII-masked there, token counts, latency) under its ``prediction_id``, which
``POST /v1/feedback`` takes (``up``, ``down`` or a ``correction``).
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from lmforge.serve._dependencies import KeyCheck, runtime_of
from lmforge.serve._errors import ApiError
from lmforge.serve._gen_schemas import ChatRequest, GenerateRequest, GenerateResponse, stop_tuple
from lmforge.serve._generation import Running, start
from lmforge.serve._http_errors import AUTH_ERRORS, BODY_ERRORS, responses
from lmforge.serve._keys import ApiKey
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._predictions import record_generation
from lmforge.serve._settings import ServeSettings

__all__ = ["generate_router", "sse"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_POLL_DISCONNECT_S = 0.25


def sse(payload: Any) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class _ClientGone(Exception):
    """The client disconnected before the answer was complete."""


Done = Callable[[str, str], None]
"""Called with the whole answer and its finish reason when a sequence ends normally."""


async def _events(running: Running) -> AsyncIterator[tuple[str, Any]]:
    """The sequence's events up to and including its end (or error)."""
    while True:
        kind, value = await running.seq.events.get()
        yield kind, value
        if kind != "delta":
            return


def _end_error(kind: str, value: Any, timeout: float) -> ApiError | None:
    """The error an ``end``/``error`` event means, or None for a normal end (``stop``, ``length``)."""
    if kind == "error":
        return ApiError(500, "model_error", "The model failed on this request; the server log has the details.")
    if value == "deadline":
        return ApiError(504, "deadline_exceeded", f"The answer did not finish within the {timeout:g} s deadline "
                        "(generation.request_timeout_s).")
    if value == "cancelled":
        return ApiError(499, "cancelled", "The request was cancelled.")
    return None


async def _collect(running: Running, request: Request, timeout: float) -> tuple[str, str]:
    """The whole answer and its finish reason, watching for a disconnect while the model works."""
    parts: list[str] = []
    loop = asyncio.get_running_loop()
    check_at = loop.time() + _POLL_DISCONNECT_S
    while True:
        try:
            kind, value = await asyncio.wait_for(running.seq.events.get(), timeout=_POLL_DISCONNECT_S)
        except TimeoutError:
            kind = None
        if loop.time() >= check_at:  # tokens may arrive faster than the poll: check by the clock
            check_at = loop.time() + _POLL_DISCONNECT_S
            if await request.is_disconnected():
                running.finish()
                raise _ClientGone from None
        if kind is None:
            continue
        if kind == "delta":
            parts.append(value)
            continue
        error = _end_error(kind, value, timeout)
        if error is not None:
            raise error
        return "".join(parts), value


def _prompt_chars(turns: list[dict[str, str]] | str, limit: int) -> None:
    n = len(turns) if isinstance(turns, str) else sum(len(t["content"]) for t in turns)
    if n > limit:
        raise ApiError(422, "validation_error", f"The prompt has {n} characters, more than "
                       f"generation.max_prompt_chars = {limit}.")


def _error_payload(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "type": "server_error", "param": None}}


def generate_router(settings: ServeSettings, metrics: ServeMetrics, require_predict: KeyCheck) -> APIRouter:
    """``POST /v1/generate`` and ``POST /v1/chat/completions``, behind ``require_predict``."""
    g = settings.generation
    PredictKey = Annotated[ApiKey, Depends(require_predict)]
    router = APIRouter(tags=["generate"])

    async def begin(request: Request, body: Any, prompt: Any, max_new: int | None) -> Running:
        _prompt_chars(prompt, g.max_prompt_chars)
        runtime = runtime_of(request)
        running = await start(runtime, settings, runtime.tokens, model=body.model, prompt=prompt,
                              max_new_tokens=max_new, temperature=body.temperature, top_p=body.top_p,
                              stop=stop_tuple(body.stop), seed=body.seed)
        metrics.predictions.labels(running.loaded.model, str(running.loaded.version)).inc()
        return running

    @router.post("/v1/generate", response_model=GenerateResponse, summary="Generate text",
                 responses=responses(*AUTH_ERRORS, *BODY_ERRORS, 404, 500, 503, 504))
    async def generate(body: GenerateRequest, request: Request, key: PredictKey) -> Response:
        if (body.prompt is None) == (body.messages is None):
            raise ApiError(422, "validation_error", "Give exactly one of 'prompt' (text) or 'messages' (chat turns).")
        prompt = body.prompt if body.prompt is not None else [m.turn() for m in body.messages or []]
        started = time.monotonic()
        running = await begin(request, body, prompt, body.max_new_tokens)
        ident = uuid.uuid4().hex
        head = {"id": ident, "prediction_id": ident, "model": running.loaded.model,
                "version": running.loaded.version}
        done = _recorder(request, running, prompt, key, ident, started)
        if body.stream:
            return StreamingResponse(_generate_stream(running, head, g.request_timeout_s, done),
                                     media_type="text/event-stream", headers=_SSE_HEADERS)
        try:
            text, finish = await _collect(running, request, g.request_timeout_s)
        except _ClientGone:
            return Response(status_code=499)
        finally:
            running.finish()
        done(text, finish)
        payload = {**head, "text": text, "finish_reason": finish, "prompt_tokens": running.prompt_tokens,
                   "completion_tokens": running.completion_tokens}
        return Response(json.dumps(payload), media_type="application/json")

    @router.post("/v1/chat/completions", summary="Chat completion (OpenAI wire format)",
                 responses=responses(*AUTH_ERRORS, *BODY_ERRORS, 404, 500, 503, 504))
    async def chat(body: ChatRequest, request: Request, key: PredictKey) -> Response:
        turns = [m.turn() for m in body.messages]
        started = time.monotonic()
        running = await begin(request, body, turns, body.max_completion_tokens or body.max_tokens)
        ident = uuid.uuid4().hex
        head = {"id": f"chatcmpl-{ident}", "prediction_id": ident, "created": running.created,
                "model": running.loaded.model, "system_fingerprint": f"{running.loaded.model}:{running.loaded.version}"}
        done = _recorder(request, running, turns, key, ident, started)
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_chat_stream(running, head, usage, g.request_timeout_s, done),
                                     media_type="text/event-stream", headers=_SSE_HEADERS)
        try:
            text, finish = await _collect(running, request, g.request_timeout_s)
        except _ClientGone:
            return Response(status_code=499)
        finally:
            running.finish()
        done(text, finish)
        payload = {
            **head, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish}],
            "usage": _usage(running),
        }
        return Response(json.dumps(payload), media_type="application/json")

    return router


def _recorder(request: Request, running: Running, prompt: Any, key: ApiKey, ident: str, started: float) -> Done:
    monitor = runtime_of(request).monitor

    def done(text: str, finish: str) -> None:
        record_generation(monitor, running, prompt, text, finish, key.key_id, ident, started)

    return done


def _usage(running: Running) -> dict[str, int]:
    return {"prompt_tokens": running.prompt_tokens, "completion_tokens": running.completion_tokens,
            "total_tokens": running.prompt_tokens + running.completion_tokens}


async def _generate_stream(running: Running, head: dict[str, Any], timeout: float, done: Done) -> AsyncIterator[str]:
    """``data: {"text": delta}`` events, then one with the finish reason and token counts, then ``[DONE]``."""
    parts: list[str] = []
    try:
        async for kind, value in _events(running):
            if kind == "delta":
                parts.append(value)
                yield sse({"text": value})
                continue
            error = _end_error(kind, value, timeout)
            if error is not None:
                yield sse(_error_payload(error))
            else:
                done("".join(parts), value)
                yield sse({**head, "text": "", "finish_reason": value, "prompt_tokens": running.prompt_tokens,
                           "completion_tokens": running.completion_tokens})
        yield "data: [DONE]\n\n"
    finally:  # also when the client went away: the write failed or the response task was cancelled
        running.finish()


async def _chat_stream(running: Running, head: dict[str, Any], usage: bool, timeout: float,
                       done: Done) -> AsyncIterator[str]:
    """OpenAI's ``chat.completion.chunk`` events: the role, content deltas, the finish reason, ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**head, "object": "chat.completion.chunk", "choices": [choice]})

    parts: list[str] = []
    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        async for kind, value in _events(running):
            if kind == "delta":
                parts.append(value)
                yield chunk({"content": value}, None)
                continue
            error = _end_error(kind, value, timeout)
            if error is not None:
                yield sse(_error_payload(error))
                break
            done("".join(parts), value)
            yield chunk({}, value)
            if usage:
                yield sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(running)})
        yield "data: [DONE]\n\n"
    finally:
        running.finish()
