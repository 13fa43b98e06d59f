"""Serving a generative version: the token budget, and one request's life on the scheduler.

:class:`TokenBudget` is admission control counted in tokens: a request reserves its prompt plus
``max_new_tokens`` until it ends, and one that would pass ``generation.token_budget`` gets 429 +
Retry-After (from the measured decode rate), as the classifier path does with texts.
:func:`start` checks and submits a request; :class:`Running` releases its reservation exactly
once, however the request ends (answered, timed out, client gone).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from lmforge.predict import CAUSAL_LM, PromptLike
from lmforge.serve._admission import Overloaded
from lmforge.serve._decode import DecodeParams, SchedulerClosed, Sequence
from lmforge.serve._engines import GeneratorEngine
from lmforge.serve._errors import ApiError, ServeError, overloaded
from lmforge.serve._settings import ServeSettings
from lmforge.serve._slots import Loaded

__all__ = ["Running", "TokenBudget", "start"]


class TokenBudget:
    """Tokens (prompt + ``max_new_tokens``) reserved by admitted generation requests, at most ``limit``.

    Runs on the event loop thread only, so the counter needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def admit(self, tokens: int, tokens_per_s: float) -> int:
        """Reserve ``tokens`` or raise :class:`Overloaded` (Retry-After from ``tokens_per_s``)."""
        if self.used + tokens > self.limit:
            wait = math.ceil(self.used / tokens_per_s) if tokens_per_s > 0 else 1
            raise Overloaded(
                f"{self.used} of generation.token_budget = {self.limit} tokens reserved, this request needs {tokens}",
                int(min(60, max(1, wait))),
            )
        self.used += tokens
        return tokens

    def release(self, tokens: int) -> None:
        self.used -= tokens


@dataclass(eq=False)
class Running:
    """An admitted request on the scheduler; :meth:`finish` (idempotent) cancels it and frees its tokens."""

    seq: Sequence
    loaded: Loaded
    reserved: int
    budget: TokenBudget
    created: int
    metrics: Any
    _done: bool = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.seq.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.seq.tokens)

    def finish(self) -> None:
        if not self._done:
            self._done = True
            self.seq.cancel()
            self.budget.release(self.reserved)
            model, version = self.loaded.model, str(self.loaded.version)
            self.metrics.generations.labels(model, version, self.seq.finish or "cancelled").inc()
            self.metrics.generated_tokens.labels(model, version).inc(len(self.seq.tokens))
            self.metrics.prompt_tokens.labels(model, version).inc(len(self.seq.prompt_ids))
            self.metrics.tokens_per_s.labels(model, version).set(self.loaded.engine.scheduler.tokens_per_s)
            if self.seq.finish in ("stop", "length"):  # what the canary judge compares on length-stops
                self.loaded.length_stops.append(self.seq.finish == "length")
            self.metrics.tokens_reserved.set(self.budget.used)


def _engine_of(runtime: Any, model: str | None) -> Loaded:
    slot = runtime.resolve(model)
    target: Loaded | None = slot.pick()
    if target is None:
        raise ServeError(f"Model {slot.name!r} has no version loaded.")
    if getattr(target.engine, "kind", None) != CAUSAL_LM:
        raise ServeError(f"Model {slot.name!r} is a classifier; it does not generate text. POST /v1/predict instead.")
    return target


async def start(runtime: Any, settings: ServeSettings, budget: TokenBudget, *, model: str | None,
                prompt: PromptLike, max_new_tokens: int | None, temperature: float, top_p: float,
                stop: tuple[str, ...], seed: int | None) -> Running:
    """Resolve the model, tokenize, reserve tokens and submit; the caller must :meth:`Running.finish` it.

    ``max_new_tokens`` is capped at ``generation.max_new_tokens`` and at what the context leaves
    after the prompt (either cap ends the answer with ``length``).

    Raises:
        ServeError: no such model, or a classifier (404 / 422).
        ApiError: the prompt fills the context (400), needs more than the whole budget (422),
            or the budget is full now (429 + Retry-After).
        DataError: malformed chat turns (422).
    """
    g = settings.generation
    loaded = _engine_of(runtime, model)
    engine: GeneratorEngine = loaded.engine
    generator = engine.generator
    ids: list[int] = await asyncio.to_thread(generator.encode_prompt, prompt)
    room = generator.max_length - len(ids)
    if room < 1:
        raise ApiError(400, "context_length_exceeded",
                       f"The prompt has {len(ids)} tokens; the model's context is {generator.max_length}. "
                       "Shorten the prompt.")
    new = min(max_new_tokens or g.max_new_tokens, g.max_new_tokens, room)
    need = len(ids) + new
    if need > budget.limit:
        raise ApiError(422, "over_token_budget",
                       f"The request needs {need} tokens (prompt {len(ids)} + max_new_tokens {new}), more than "
                       f"generation.token_budget = {budget.limit}; shorten the prompt or lower max_new_tokens.")
    try:
        reserved = budget.admit(need, engine.scheduler.tokens_per_s)
    except Overloaded as exc:
        runtime.metrics.rejected.labels("overloaded").inc()
        raise overloaded(exc.reason, exc.retry_after) from None
    params = DecodeParams(new, float(temperature), float(top_p), stop, seed)
    seq = Sequence(ids, params, time.monotonic() + g.request_timeout_s, asyncio.get_running_loop())
    running = Running(seq, loaded, reserved, budget, int(time.time()), runtime.metrics)
    seq.on_end = running.finish
    runtime.metrics.tokens_reserved.set(budget.used)
    try:
        engine.scheduler.submit(seq)
    except SchedulerClosed:
        running.finish()
        raise ApiError(503, "unavailable", "The model version is being unloaded; retry.",
                       {"Retry-After": "1"}) from None
    return running
