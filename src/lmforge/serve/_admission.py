"""Admission control and rate limits: refuse early with 429 + Retry-After instead of queueing forever.

:class:`Admission` bounds the predict requests admitted at once and the texts they carry,
and refuses a request whose estimated queue wait (queued texts / measured throughput)
already exceeds its deadline, so an accepted request is one the server expects to answer in
time. :class:`TokenBucket` is the per-key rate limit.

Everything here runs on the event loop thread, so plain counters need no lock.
"""

from __future__ import annotations

import collections
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Admission", "KeyedBuckets", "Overloaded", "TokenBucket"]


class Overloaded(Exception):
    """No capacity now; try again after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Slot:
    texts: int


class Admission:
    """Bounded in-flight requests and queued texts, with a throughput estimate for Retry-After.

    Args:
        max_in_flight: requests admitted at once.
        max_texts: texts of admitted requests not yet answered.
        deadline_s: a request's time budget; one expected to wait longer is refused.
    """

    def __init__(self, max_in_flight: int, max_texts: int, deadline_s: float) -> None:
        self.max_in_flight = max_in_flight
        self.max_texts = max_texts
        self.deadline_s = deadline_s
        self.in_flight = 0
        self.texts = 0
        self.rejected = 0
        # The last model calls as (texts, seconds): throughput is their ratio of sums, so a slow call of one
        # text (after an idle spell, or on a busy machine) cannot drag the estimate down on its own.
        self._calls: collections.deque[tuple[int, float]] = collections.deque(maxlen=32)
        self._rate = 0.0

    @property
    def throughput(self) -> float:
        """Measured texts per second (0 until the first model call)."""
        return self._rate

    def observe(self, texts: int, seconds: float, concurrency: int = 1) -> None:
        """Record one model call of ``texts`` that took ``seconds`` (``concurrency`` calls can overlap)."""
        if seconds <= 0:
            return
        self._calls.append((texts, seconds))
        total_seconds = sum(s for _, s in self._calls)
        self._rate = sum(n for n, _ in self._calls) / total_seconds * concurrency

    def retry_after(self, extra: int = 0) -> int:
        """Seconds until the admitted work (plus ``extra`` texts) is expected to be done, 1..60."""
        if self._rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil((self.texts + extra) / self._rate))))

    def admit(self, n_texts: int) -> _Slot:
        """Admit a request of ``n_texts`` or raise :class:`Overloaded`; pair with :meth:`release`."""
        if self.in_flight >= self.max_in_flight:
            self.rejected += 1
            raise Overloaded(
                f"{self.in_flight} requests in flight (limit {self.max_in_flight})", self.retry_after()
            )
        if self.texts + n_texts > self.max_texts:
            self.rejected += 1
            raise Overloaded(f"{self.texts} texts queued (limit {self.max_texts})", self.retry_after(n_texts))
        if self._rate > 0 and self.texts > 0:
            wait = (self.texts + n_texts) / self._rate
            if wait > 0.8 * self.deadline_s:  # keep a margin: the estimate lags a slowing model
                self.rejected += 1
                raise Overloaded(
                    f"estimated wait {wait:.1f}s exceeds the {self.deadline_s:g}s deadline",
                    self.retry_after(n_texts),
                )
        self.in_flight += 1
        self.texts += n_texts
        return _Slot(n_texts)

    def release(self, slot: _Slot) -> None:
        self.in_flight -= 1
        self.texts -= slot.texts


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per request."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class KeyedBuckets:
    """A :class:`TokenBucket` per name (an API key id, a client address), at most ``limit`` of them:
    the least recently used is dropped first, so a flood of new names cannot grow memory."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, name: str, rate: float, burst: int) -> float:
        """0 when ``name`` may go now, else the seconds until it may (a new rate starts a new bucket)."""
        bucket = self._buckets.get(name)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = self._buckets[name] = TokenBucket(rate, burst)
        self._buckets.move_to_end(name)
        while len(self._buckets) > self.limit:
            self._buckets.popitem(last=False)
        return bucket.take()
