"""API keys: random tokens shown once, stored only as their SHA-256, with a role and an optional rate.

A token looks like ``lmf_<key id>_<secret>``: the key id (12 hex digits) is public, names the
key in listings, logs and the audit trail, and finds its row; the secret is 32 random bytes
(256 bits), so a plain SHA-256 is enough to store it (a slow password hash protects guessable
secrets, which these are not). The check compares digests in constant time.

Roles: ``predict`` (predict, feedback, metrics) and ``admin`` (everything, including the
registry and the key list); admin implies predict.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from lmforge.errors import ConfigError, LmforgeError
from lmforge.serve._db import Tables, now

__all__ = ["ROLES", "ApiKey", "KeyStore", "hash_token", "role_allows"]

ROLES = ("predict", "admin")
_TOKEN = re.compile(r"^lmf_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def role_allows(role: str, needed: str) -> bool:
    """Whether a key with ``role`` may do what needs ``needed`` (admin implies predict)."""
    return role == needed or role == "admin"


@dataclass(frozen=True)
class ApiKey:
    """One key as listed: never the token, never its hash."""

    key_id: str
    name: str
    role: str
    rate_per_s: float | None
    created_at: str
    created_by: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


class KeyStore:
    """Create, list, revoke and check API keys in the registry database."""

    def __init__(self, engine: Any, tables: Tables) -> None:
        self.engine = engine
        self.t = tables.api_keys

    def create(
        self, name: str, role: str, *, actor: str, rate_per_s: float | None = None
    ) -> tuple[str, ApiKey]:
        """A new key; returns ``(token, key)``. The token is not stored and cannot be shown again.

        Raises:
            ConfigError: an unknown role, an empty name or a non-positive rate.
        """
        problems = []
        if role not in ROLES:
            problems.append(f"Unknown role {role!r}. Available: {', '.join(ROLES)}.")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            problems.append("A key needs a name of 1-128 characters (who or what uses it).")
        if rate_per_s is not None and not rate_per_s > 0:
            problems.append(f"--rate must be greater than 0 requests/s, got {rate_per_s}.")
        if problems:
            raise ConfigError(problems)
        key_id = secrets.token_hex(6)
        token = f"lmf_{key_id}_{secrets.token_urlsafe(32)}"
        row = {
            "key_id": key_id,
            "name": name.strip(),
            "role": role,
            "token_sha256": hash_token(token),
            "rate_per_s": rate_per_s,
            "created_at": now(),
            "created_by": actor,
            "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(self.t.insert().values(**row))
        return token, _key(row)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(self.t.select().order_by(self.t.c.created_at)).mappings().all()
        keys = [_key(r) for r in rows]
        return keys if include_revoked else [k for k in keys if k.active]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (it stays listed, as revoked).

        Raises:
            LmforgeError: no such key (the message lists the ids that exist).
        """
        with self.engine.begin() as conn:
            row = conn.execute(self.t.select().where(self.t.c.key_id == key_id)).mappings().first()
            if row is None:
                have = [r for (r,) in conn.execute(self.t.select().with_only_columns(self.t.c.key_id))]
                raise LmforgeError(
                    f"No API key with id {key_id!r}. Existing ids: {', '.join(have) or 'none'} "
                    "(see `lmforge keys list`)."
                )
            if row["revoked_at"] is None:
                conn.execute(self.t.update().where(self.t.c.key_id == key_id).values(revoked_at=now()))
            row = conn.execute(self.t.select().where(self.t.c.key_id == key_id)).mappings().first()
        return _key(row)

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """A key and its stored digest by id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(self.t.select().where(self.t.c.key_id == key_id)).mappings().first()
        return None if row is None else (_key(row), str(row["token_sha256"]))


def key_id_of(token: str) -> str | None:
    """The key id inside a well-formed token, or None."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def token_matches(token: str, digest: str) -> bool:
    """Constant-time comparison of a presented token against a stored digest."""
    return hmac.compare_digest(hash_token(token), digest)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=row["role"],
        rate_per_s=None if row["rate_per_s"] is None else float(row["rate_per_s"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
    )
