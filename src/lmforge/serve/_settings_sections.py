"""The sections of the serving settings: batching, limits, auth and canary (see :mod:`._settings`).

Each is a dataclass of plain data, checked in ``__post_init__``, every problem reported at once
with its dotted key. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.errors import ConfigError

__all__ = [
    "AuthSettings",
    "BatchingSettings",
    "CanarySettings",
    "GenerationSettings",
    "LimitSettings",
    "check",
    "positive",
]


def positive(problems: list[str], key: str, value: float, *, allow_zero: bool = False) -> None:
    """Add a problem unless ``value`` is a number above 0 (or at least 0 with ``allow_zero``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        need = "at least 0" if allow_zero else "greater than 0"
        problems.append(f"{key} must be a number {need}, got {value!r}.")


@dataclass
class BatchingSettings:
    """Adaptive micro-batching: concurrent requests merged into one ``predict_proba`` call."""

    max_batch_size: int = 64
    """Most texts in one model call; a larger request still runs as one call."""
    max_wait_ms: float = 0.0
    """How long a batch waits for more requests once the first one is queued. 0 batches whatever
    is queued when a worker is free: that cost nothing at one connection and gave 1.6x at 32 on
    this machine, where a fixed 5 ms wait cut single-connection throughput 2.5x."""
    workers: int = 1
    """Batches run at the same time per loaded model (local backend: inference threads). More
    than one only helps when each call leaves cores idle (``threads`` below the core count)."""
    threads: int | None = None
    """Intra-op threads of the model (torch or ONNX Runtime), split between the workers. None: for a torch
    classifier, every usable core but one (the spare core keeps the event loop feeding the model large
    batches); for ONNX Runtime, every core, its idle threads sleeping instead of spinning; for a
    generative version, every core (decoding leaves the event loop little to do)."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            problems.append(f"batching.max_batch_size must be an integer >= 1, got {self.max_batch_size!r}.")
        positive(problems, "batching.max_wait_ms", self.max_wait_ms, allow_zero=True)
        if not isinstance(self.workers, int) or self.workers < 1:
            problems.append(f"batching.workers must be an integer >= 1, got {self.workers!r}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            problems.append(f"batching.threads must be an integer >= 1 or null, got {self.threads!r}.")
        check(problems)


@dataclass
class LimitSettings:
    """Admission control and input limits: beyond them a request is refused, never left to hang."""

    max_in_flight: int = 256
    """Predict requests admitted at once (queued or running); the next one gets 429 + Retry-After."""
    max_queued_texts: int = 2048
    """Texts of admitted requests not yet answered; beyond it, 429 + Retry-After."""
    request_timeout_s: float = 10.0
    """Deadline of a predict request from arrival. Expired while queued: 503; while running: 504.
    A request whose estimated queue wait already exceeds it is refused with 429 up front."""
    max_body_bytes: int = 1_000_000
    """Largest request body; larger ones get 413 before the body is read."""
    max_texts: int = 64
    """Most texts in one predict request (422 beyond)."""
    max_text_chars: int = 2000
    """Longest text, in characters (422 beyond). The model truncates to its max_length tokens anyway."""
    max_connections: int = 1000
    """Open connections (and running requests) the server holds; the next one gets 503 at once
    (uvicorn's ``limit_concurrency``), so idle or slow clients cannot exhaust the process."""
    keep_alive_s: float = 5.0
    """An idle keep-alive connection is closed after this many seconds."""
    feedback_rate_per_s: float | None = 10.0
    """Feedback labels per second each key may send (its own token bucket, burst 2 x rate, besides
    ``auth.rate_per_s``): feedback drives the canary judge. None: only ``auth.rate_per_s`` applies."""
    explain_rate_per_s: float | None = 1.0
    """Explanations per second each key may ask for (``POST /v1/explain``; its own token bucket, burst
    2 x rate, rounded up): one costs tens of forward passes. None: only ``auth.rate_per_s`` applies."""
    explain_steps: int = 32
    """Integrated-gradients steps of an explanation (the forward and backward passes it costs)."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("max_in_flight", "max_queued_texts", "max_body_bytes", "max_texts", "max_text_chars",
                     "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"limits.{name} must be an integer >= 1, got {value!r}.")
        positive(problems, "limits.request_timeout_s", self.request_timeout_s)
        positive(problems, "limits.keep_alive_s", self.keep_alive_s)
        if self.feedback_rate_per_s is not None:
            positive(problems, "limits.feedback_rate_per_s", self.feedback_rate_per_s)
        if self.explain_rate_per_s is not None:
            positive(problems, "limits.explain_rate_per_s", self.explain_rate_per_s)
        positive(problems, "limits.explain_steps", self.explain_steps)
        if not problems and self.max_queued_texts < self.max_texts:
            problems.append(
                f"limits.max_queued_texts ({self.max_queued_texts}) must be at least limits.max_texts "
                f"({self.max_texts}), or a full request could never be admitted."
            )
        check(problems)


@dataclass
class AuthSettings:
    """API keys (stored hashed in the registry database), per-key rate limits, the dashboard's login."""

    rate_per_s: float | None = 100.0
    """Requests per second each key may make (token bucket, on by default so one key cannot take the
    server; None: unlimited). A key's own rate (``lmforge keys create --rate``) takes precedence."""
    burst: int | None = None
    """Bucket size: requests a key may make at once after being idle (default: 2 x rate, at least 1)."""
    metrics_auth: bool = True
    """``/metrics`` needs a key (any role). False exposes it to whoever reaches the port."""
    docs_auth: bool = False
    """``/docs`` (when on) and ``/openapi.json`` need a key (any role); public by default (no secrets)."""
    key_cache_s: float = 2.0
    """Seconds a key read from the database is trusted: a revoked key stops working within them."""
    session_ttl_s: float = 3600.0
    """Seconds a dashboard login lasts (``POST /login`` trades an admin key for a session cookie). Sessions
    live in the server process's memory, 1000 at most: a restart ends them, processes do not share them."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.rate_per_s is not None:
            positive(problems, "auth.rate_per_s", self.rate_per_s)
        if self.burst is not None and (not isinstance(self.burst, int) or self.burst < 1):
            problems.append(f"auth.burst must be an integer >= 1 or null, got {self.burst!r}.")
        positive(problems, "auth.key_cache_s", self.key_cache_s, allow_zero=True)
        positive(problems, "auth.session_ttl_s", self.session_ttl_s)
        check(problems)


@dataclass
class CanarySettings:
    """Automatic rollback of a canary version that does worse than the stable one."""

    min_requests: int = 200
    """Canary requests (and stable ones) seen before its error rate is judged."""
    error_margin: float = 0.02
    """Roll back when canary error rate > stable error rate + this (an error: the model call failed
    or returned non-finite probabilities)."""
    min_feedback: int = 50
    """Feedback labels on canary predictions (and stable ones) before its live accuracy is judged
    (needs monitoring; see ``ServeSettings.monitor``)."""
    min_feedback_keys: int = 3
    """Distinct API keys those labels must come from, on the canary and on the stable version,
    before accuracy can roll the canary back: one client alone cannot steer a rollout."""
    accuracy_margin: float = 0.05
    """Roll back when canary live accuracy < stable live accuracy - this (a generative version's live
    accuracy is its share of thumbs-up feedback)."""
    length_margin: float = 0.1
    """A generative canary: roll back when its share of answers cut at the token limit (``length``)
    exceeds the stable version's by more than this, after ``min_requests`` answers on both."""
    window: int = 500
    """Most recent feedback labels per version that live accuracy is computed over."""
    check_interval_s: float = 1.0
    """How often the canary is judged."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("min_requests", "min_feedback", "min_feedback_keys", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"canary.{name} must be an integer >= 1, got {value!r}.")
        for name in ("error_margin", "accuracy_margin", "length_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                problems.append(f"canary.{name} must be a fraction in [0, 1), got {value!r}.")
        positive(problems, "canary.check_interval_s", self.check_interval_s)
        check(problems)


@dataclass
class GenerationSettings:
    """Serving a generative model: decode batching, token budget, caps (``/v1/generate``, ``/v1/chat``)."""

    max_new_tokens: int = 256
    """Cap on the tokens one request may generate; a request asking more (or naming none) gets this."""
    token_budget: int = 16384
    """Prompt plus ``max_new_tokens`` tokens of all admitted generation requests; the next request
    that would pass it gets 429 + Retry-After (one larger than the whole budget gets 422)."""
    max_batch: int = 16
    """Sequences decoded together (continuous batching); more admitted ones wait for a free place."""
    request_timeout_s: float = 120.0
    """Deadline of a generation request from arrival: past it the sequence is stopped (504, or an
    error event on a stream)."""
    max_prompt_chars: int = 32000
    """Longest prompt (all message contents together), in characters (422 beyond)."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("max_new_tokens", "token_budget", "max_batch", "max_prompt_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"generation.{name} must be an integer >= 1, got {value!r}.")
        positive(problems, "generation.request_timeout_s", self.request_timeout_s)
        check(problems)


def check(problems: list[str]) -> None:
    """Raise every problem at once as one :class:`ConfigError`."""
    if problems:
        raise ConfigError(problems)
