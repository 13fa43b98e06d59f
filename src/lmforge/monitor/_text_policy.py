"""The stored-text policy: what the prediction store keeps of an input text."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from lmforge.errors import ConfigError
from lmforge.guard import CryptoKeyError, load_encryptor
from lmforge.guard.pii import PrivacyPolicy, redact
from lmforge.monitor._settings import TEXT_POLICIES

__all__ = ["TextPolicy"]

# Named after the module that held this policy before, so log filters on the name keep matching.
log = logging.getLogger("lmforge.monitor._text")

_AD = b"lmforge.monitor.text"  # binds ciphertexts to this column: a token moved elsewhere fails to decrypt
_HASH_DOMAIN = b"lmforge.monitor.text_hash\0"


class TextPolicy:
    """Turns an input text into what the store keeps: ``(text_hash, stored_text)``.

    ``text_hash`` is a hash of the PII-masked text, so equal texts share a hash (under one
    key). Under ``hash`` it is the only trace of the text, so it is an HMAC keyed by
    ``$LMFORGE_PII_SALT`` (the key of guard's PII ``hash`` mode): a bare hash of a short text
    ("refund please") is reversed by hashing guesses. Under ``redact`` and ``none`` the row
    holds the masked (or clear) text itself, so the hash is a plain SHA-256 that hides
    nothing the row does not show; under the ``encrypt`` policies the text is unreadable
    without the key ring, and a plain hash would let guesses be checked against it, so the
    hash is keyed by the primary encryption key (it changes when the key rotates).
    """

    def __init__(self, policy: str = "redact", key_file: str | None = None) -> None:
        if policy not in TEXT_POLICIES:
            raise ConfigError(f"text_policy must be one of {', '.join(TEXT_POLICIES)}, got {policy!r}.")
        self.policy = policy
        self._encryptor: Any = None
        self._hash_key: bytes | None = None
        # Keys are read now, at start, so a missing one fails here and not in the writer process.
        if "encrypt" in policy:
            self._encryptor = load_encryptor(key_file)
            ring = self._encryptor.keyring
            self._hash_key = hashlib.sha256(_HASH_DOMAIN + ring.key(ring.primary)).digest()
        if policy == "hash":
            pii = PrivacyPolicy(mode="hash")
            try:
                self._hash_key = pii.salt()
            except CryptoKeyError as exc:
                raise ConfigError(f"monitor text_policy 'hash': {exc}") from None
        if policy == "none":
            log.warning(
                "monitor text_policy 'none': input texts are stored in clear, personal data included."
            )

    def apply(self, text: str) -> tuple[str, str | None]:
        """``(text_hash, stored_text)``; ``stored_text`` is None under the ``hash`` policy."""
        masked = redact(text).text
        body = masked.encode("utf-8")
        if self._hash_key is None:
            digest = hashlib.sha256(body).hexdigest()
        else:
            digest = hmac.new(self._hash_key, body, hashlib.sha256).hexdigest()
        if self.policy == "redact":
            return digest, masked
        if self.policy == "redact+encrypt":
            return digest, self._encryptor.encrypt_text(masked, _AD)
        if self.policy == "encrypt":
            return digest, self._encryptor.encrypt_text(text, _AD)
        if self.policy == "hash":
            return digest, None
        return digest, text

    def reveal(self, stored: str | None) -> str | None:
        """The readable text of a stored value (decrypted under the ``encrypt`` policies)."""
        if stored is None or self._encryptor is None:
            return stored
        return str(self._encryptor.decrypt_text(stored, _AD))
