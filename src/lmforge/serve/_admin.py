"""Offline administration of the registry database: what ``lmforge keys`` and ``lmforge registry`` call.

The same database and tables a running server uses; a running server picks registry changes
up within ``registry_poll_s`` and key changes within ``auth.key_cache_s``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lmforge.guard import audit_log_from_env
from lmforge.serve._db import connect
from lmforge.serve._keys import ApiKey, KeyStore
from lmforge.serve._registry import ModelRegistry
from lmforge.serve._settings import ServeSettings

__all__ = ["Stores", "create_key", "open_stores", "revoke_key"]


@dataclass
class Stores:
    """The registry, the key store and the audit log (None when auditing is off) of one database."""

    registry: ModelRegistry
    keys: KeyStore
    audit: Any


@contextlib.contextmanager
def open_stores(settings: ServeSettings) -> Iterator[Stores]:
    """Open the registry database named by ``settings`` (created if missing); closed on exit."""
    engine, tables = connect(settings.database_url)
    audit = audit_log_from_env(settings.audit_log_path)
    try:
        yield Stores(ModelRegistry(engine, tables, audit), KeyStore(engine, tables), audit)
    finally:
        engine.dispose()


def create_key(
    stores: Stores, name: str, role: str, *, actor: str, rate_per_s: float | None = None
) -> tuple[str, ApiKey]:
    """Create an API key and audit it (``key.create``; the token is never recorded)."""
    token, key = stores.keys.create(name, role, actor=actor, rate_per_s=rate_per_s)
    if stores.audit is not None:
        stores.audit.append(
            actor,
            "key.create",
            f"api-key:{key.key_id}",
            {"name": key.name, "role": key.role, "rate_per_s": key.rate_per_s},
        )
    return token, key


def revoke_key(stores: Stores, key_id: str, *, actor: str) -> ApiKey:
    """Revoke an API key and audit it (``key.revoke``)."""
    key = stores.keys.revoke(key_id)
    if stores.audit is not None:
        stores.audit.append(
            actor, "key.revoke", f"api-key:{key.key_id}", {"name": key.name, "role": key.role}
        )
    return key
