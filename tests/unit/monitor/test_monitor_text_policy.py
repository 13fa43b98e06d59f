"""The stored-text policy: the ``hash`` policy's text_hash is a keyed HMAC, and its key is checked at start."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.guard.pii import redact
from lmforge.monitor import Monitor, MonitorSettings
from lmforge.monitor._text_policy import TextPolicy

SALT = "a-long-enough-secret-salt"
TEXT = "refund please, call 13812345678"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_hash_policy_is_an_hmac_keyed_by_the_pii_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_PII_SALT", SALT)
    policy = TextPolicy("hash")
    digest, stored = policy.apply(TEXT)
    masked = redact(TEXT).text
    assert stored is None and "13812345678" not in masked
    assert digest == hmac.new(SALT.encode(), masked.encode(), hashlib.sha256).hexdigest()
    assert digest != sha256(masked)  # a bare hash of a short text is reversed by hashing guesses
    assert len(digest) == 64  # fits the store's text_hash column
    assert TextPolicy("hash").apply(TEXT)[0] == digest  # stable for equal texts under one key
    assert policy.apply("refund please, call 13987654321")[0] == digest  # the masked text is what counts
    assert policy.apply("something else")[0] != digest
    monkeypatch.setenv("LMFORGE_PII_SALT", "another-long-enough-secret")
    assert TextPolicy("hash").apply(TEXT)[0] != digest  # a new key, new hashes


@pytest.mark.parametrize(("value", "state"), [(None, "is not set"), ("short", "holds only 5 characters")])
def test_hash_policy_without_its_key_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, state: str
) -> None:
    if value is None:
        monkeypatch.delenv("LMFORGE_PII_SALT", raising=False)
    else:
        monkeypatch.setenv("LMFORGE_PII_SALT", value)
    with pytest.raises(ConfigError, match=rf"text_policy 'hash'.*\$LMFORGE_PII_SALT, which {state}") as exc:
        TextPolicy("hash")
    assert "short" not in str(exc.value)  # the secret is never echoed
    pytest.importorskip("sqlalchemy")
    monitor = Monitor(MonitorSettings(url=f"sqlite:///{tmp_path / 'monitor.db'}", text_policy="hash"), ["a", "b"])
    with pytest.raises(ConfigError, match="LMFORGE_PII_SALT"):
        monitor.start()  # at start, not on the writer thread


def test_redact_policy_hash_stays_a_plain_sha256_of_the_stored_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The row holds the masked text itself, so a key would hide nothing; no key is required."""
    monkeypatch.delenv("LMFORGE_PII_SALT", raising=False)
    digest, stored = TextPolicy("redact").apply(TEXT)
    assert stored == redact(TEXT).text and digest == sha256(stored)


@pytest.mark.parametrize("policy", ["encrypt", "redact+encrypt"])
def test_encrypt_policies_key_the_hash_with_the_encryption_key(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain hash next to a ciphertext would let guesses of the text be checked without the key."""
    pytest.importorskip("cryptography")
    monkeypatch.setenv("LMFORGE_ENCRYPTION_KEY", os.urandom(32).hex())
    first = TextPolicy(policy)
    digest, stored = first.apply(TEXT)
    assert digest != sha256(redact(TEXT).text) and len(digest) == 64
    assert TextPolicy(policy).apply(TEXT)[0] == digest  # stable under one key
    assert first.reveal(stored) in (TEXT, redact(TEXT).text)
    monkeypatch.setenv("LMFORGE_ENCRYPTION_KEY", os.urandom(32).hex())
    assert TextPolicy(policy).apply(TEXT)[0] != digest
