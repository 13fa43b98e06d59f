"""Request and response bodies of the generation routes: ``/v1/generate`` and OpenAI's ``/v1/chat/completions``.

The chat request accepts the fields the official ``openai`` client sends and ignores the ones
lmforge has no use for (``user``, ``metadata``...), so client code written against OpenAI runs
unchanged; what cannot be honoured (``n`` > 1, tools) is refused with a clear message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "GenerateRequest",
    "GenerateResponse",
    "StreamOptions",
    "stop_tuple",
]

_MAX_STOP = 4
_MAX_STOP_CHARS = 64


class ChatMessage(BaseModel):
    """One turn; ``content`` is text, or OpenAI's list of ``{"type": "text", "text"}`` parts."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")

    def turn(self) -> dict[str, str]:
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


def stop_tuple(stop: str | list[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple of strings (OpenAI allows one string or a list)."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _check_stop(stop: str | list[str] | None) -> str | list[str] | None:
    values = stop_tuple(stop)
    if len(values) > _MAX_STOP:
        raise ValueError(f"at most {_MAX_STOP} stop sequences")
    if any(not s or len(s) > _MAX_STOP_CHARS for s in values):
        raise ValueError(f"each stop sequence must have 1 to {_MAX_STOP_CHARS} characters")
    return stop


class _Sampling(BaseModel):
    temperature: float = Field(default=0.0, ge=0, le=2, description="0: greedy; else sampled at this temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(default=None, description="Up to 4 stop sequences, cut from the answer.")
    seed: int | None = Field(default=None, ge=0, le=2**62, description="Seed of the sampler (same seed, same answer).")
    stream: bool = Field(default=False, description="Answer as server-sent events.")

    _stop = field_validator("stop")(_check_stop)


class GenerateRequest(_Sampling):
    """``POST /v1/generate``: a ``prompt`` (one user turn) or chat ``messages``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=64, description="Registry model (default: the served one).")
    prompt: str | None = Field(default=None, description="One user turn.")
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=256)
    max_new_tokens: int | None = Field(default=None, ge=1, description="Capped by generation.max_new_tokens.")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions`` in the OpenAI wire format."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, max_length=64)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2, description="OpenAI's default, 1; 0 is greedy.")
    n: int = Field(default=1, ge=1, le=1, description="Only one choice per request.")
    stream_options: StreamOptions | None = None


class GenerateResponse(BaseModel):
    id: str
    prediction_id: str = Field(description="The id `POST /v1/feedback` takes (with monitoring on).")
    model: str
    version: int
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
