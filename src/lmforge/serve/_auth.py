"""Authentication, roles and per-key rate limits, as FastAPI dependencies.

A key is accepted from ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``. Unknown,
malformed or revoked keys get 401, a key without the route's role 403, a key over its rate
429 with ``Retry-After``. A token that is not of the ``lmf_<id>_<secret>`` form is refused
before any database work; looked-up ids (unknown ones too) are kept in a bounded LRU for
``auth.key_cache_s`` seconds (so a revoked key stops working within that time, and a flood of
made-up ids evicts the least recently used entries, not every key at once), and the database
is read off the event loop.
Tokens never reach a log or an error message; keys are named by their public id.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import Any

from lmforge.serve._admission import KeyedBuckets
from lmforge.serve._errors import ApiError
from lmforge.serve._keys import ApiKey, KeyStore, key_id_of, role_allows, token_matches

__all__ = ["Authenticator"]

_CACHE_LIMIT = 10_000  # looked-up ids kept (unknown ids too, so guessing does not hammer the database)


class Authenticator:
    """Checks tokens against the key store and applies rate limits."""

    def __init__(self, keys: KeyStore, settings: Any) -> None:
        self.keys = keys
        self.settings = settings
        self._cache: OrderedDict[str, tuple[float, ApiKey | None, str | None]] = OrderedDict()
        self._buckets = KeyedBuckets()

    async def authenticate(self, token: str | None) -> ApiKey:
        """The key a token belongs to, or :class:`ApiError` 401."""
        if not token:
            raise _unauthorized(
                "This route needs an API key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' (create one with `lmforge keys create`)."
            )
        key_id = key_id_of(token.strip())
        found = await self._lookup(key_id) if key_id is not None else (None, None)
        key, digest = found
        # Compare against a digest even for unknown ids, so both paths cost about the same.
        matches = token_matches(token.strip(), digest or "0" * 64)
        if key is None or not matches:
            raise _unauthorized("Unknown or malformed API key.")
        if not key.active:
            raise _unauthorized(f"API key {key.key_id} was revoked.")
        return key

    def authorize(self, key: ApiKey, role: str) -> None:
        """:class:`ApiError` 403 unless ``key`` has ``role`` (admin implies predict)."""
        if not role_allows(key.role, role):
            raise ApiError(
                403,
                "forbidden",
                f"This route needs the '{role}' role; API key {key.key_id} has '{key.role}'.",
            )

    def throttle(self, key: ApiKey) -> None:
        """:class:`ApiError` 429 with Retry-After when ``key`` is over its rate."""
        rate = key.rate_per_s if key.rate_per_s is not None else self.settings.rate_per_s
        if rate is None:
            return
        wait = self._buckets.take(key.key_id, rate, self.settings.burst or max(1, math.ceil(2 * rate)))
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"API key {key.key_id} is over its rate of {rate:g} requests/s; retry after {retry} s.",
                {"Retry-After": str(retry)},
            )

    async def _lookup(self, key_id: str) -> tuple[ApiKey | None, str | None]:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key_id)
            return cached[1], cached[2]
        found = await asyncio.to_thread(self.keys.lookup, key_id)
        key, digest = found if found is not None else (None, None)
        self._cache[key_id] = (now + self.settings.key_cache_s, key, digest)
        self._cache.move_to_end(key_id)
        while len(self._cache) > _CACHE_LIMIT:
            self._cache.popitem(last=False)  # the least recently used id
        return key, digest


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
