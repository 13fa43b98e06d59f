"""Abuse of the key check degrades, never kills: made-up tokens cost no database work beyond one
lookup per id, a flood of ids cannot evict the keys in use, and every key has a rate by default."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lmforge.serve import AuthSettings, _auth
from lmforge.serve._auth import Authenticator
from lmforge.serve._errors import ApiError
from lmforge.serve._keys import ApiKey, hash_token

TOKEN = "lmf_00000000abcd_" + "B" * 43
KEY = ApiKey(key_id="00000000abcd", name="app", role="predict", rate_per_s=None, created_at="t", created_by="t",
             revoked_at=None)


class CountingStore:
    """A key store with one key that counts its lookups (the database work an attacker causes)."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        self.lookups.append(key_id)
        return (KEY, hash_token(TOKEN)) if key_id == KEY.key_id else None


def unknown(i: int) -> str:
    return f"lmf_{i:012x}_" + "A" * 43


def test_malformed_tokens_are_refused_without_a_lookup() -> None:
    store = CountingStore()
    auth = Authenticator(store, AuthSettings())  # type: ignore[arg-type]
    for token in ("not-a-key", "lmf_xyz_" + "A" * 43, TOKEN + "x", "lmf_00000000abcd_short", " " * 3):
        with pytest.raises(ApiError) as err:
            asyncio.run(auth.authenticate(token))
        assert err.value.status == 401
    assert store.lookups == []


def test_a_flood_of_made_up_ids_does_not_evict_the_key_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_auth, "_CACHE_LIMIT", 8)
    store = CountingStore()
    auth = Authenticator(store, AuthSettings(key_cache_s=600))  # type: ignore[arg-type]

    async def scenario() -> None:
        assert await auth.authenticate(TOKEN) == KEY
        for i in range(1, 100):
            with pytest.raises(ApiError):
                await auth.authenticate(unknown(i))
            assert await auth.authenticate(TOKEN) == KEY  # in use all along: stays cached
        for i in reversed(range(1, 100)):  # the newest made-up ids are remembered, older ones evicted
            with pytest.raises(ApiError):
                await auth.authenticate(unknown(i))

    asyncio.run(scenario())
    assert store.lookups.count(KEY.key_id) == 1
    assert len(auth._cache) == 8
    # 99 ids, then again newest first: the 7 that fit beside the key are answered from the cache
    assert len(store.lookups) == 1 + 99 + (99 - 7)


def test_every_key_has_a_rate_by_default() -> None:
    settings = AuthSettings()
    assert settings.rate_per_s == 100.0
    auth = Authenticator(CountingStore(), settings)  # type: ignore[arg-type]
    for _ in range(200):  # the burst: twice the rate
        auth.throttle(KEY)
    with pytest.raises(ApiError) as err:
        auth.throttle(KEY)
    assert err.value.status == 429 and err.value.code == "rate_limited"
    assert err.value.headers["Retry-After"] == "1"  # one token comes in 1/100 s: rounded up to a whole second
    unlimited = Authenticator(CountingStore(), AuthSettings(rate_per_s=None))  # type: ignore[arg-type]
    for _ in range(1000):
        unlimited.throttle(KEY)


def test_the_server_bounds_connections_and_idle_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmforge.serve._app
    import lmforge.serve._draining
    from lmforge.serve import ServeSettings, run_server

    seen: dict[str, object] = {}

    class Recorder:
        def __init__(self, config: object, app: object, drain_s: float) -> None:
            seen["config"] = config

        def run(self) -> None:
            seen["ran"] = True

    monkeypatch.setattr(lmforge.serve._draining, "DrainingServer", Recorder)
    monkeypatch.setattr(lmforge.serve._app, "create_app", lambda settings, extensions=(): object())
    logger = logging.getLogger("lmforge")
    level = logger.level
    try:
        run_server(ServeSettings())
    finally:
        logger.setLevel(level)  # run_server turns the lmforge log up to INFO for a server's lifetime
    config = seen["config"]
    assert seen["ran"] is True
    assert (config.limit_concurrency, config.timeout_keep_alive) == (1000, 5.0)  # type: ignore[attr-defined]
    assert config.host == "127.0.0.1"  # type: ignore[attr-defined]
