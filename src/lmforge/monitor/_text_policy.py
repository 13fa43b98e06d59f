"""The stored-text policy: what the prediction store keeps of an input text."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from lmforge.errors import ConfigError
from lmforge.guard import load_encryptor
from lmforge.guard.pii import redact
from lmforge.monitor._settings import TEXT_POLICIES

__all__ = ["TextPolicy"]

# Named after the module that held this policy before, so log filters on the name keep matching.
log = logging.getLogger("lmforge.monitor._text")

_AD = b"lmforge.monitor.text"  # binds ciphertexts to this column: a token moved elsewhere fails to decrypt


class TextPolicy:
    """Turns an input text into what the store keeps: ``(text_hash, stored_text)``.

    ``text_hash`` is the SHA-256 of the PII-masked text, so equal texts share a hash while
    the hash of a phone number alone cannot be reversed by hashing every phone number.
    """

    def __init__(self, policy: str = "redact", key_file: str | None = None) -> None:
        if policy not in TEXT_POLICIES:
            raise ConfigError(f"text_policy must be one of {', '.join(TEXT_POLICIES)}, got {policy!r}.")
        self.policy = policy
        self._encryptor: Any = None
        if "encrypt" in policy:
            self._encryptor = load_encryptor(key_file)  # fails now, at start, not on the writer thread
        if policy == "none":
            log.warning(
                "monitor text_policy 'none': input texts are stored in clear, personal data included."
            )

    def apply(self, text: str) -> tuple[str, str | None]:
        """``(text_hash, stored_text)``; ``stored_text`` is None under the ``hash`` policy."""
        masked = redact(text).text
        digest = hashlib.sha256(masked.encode("utf-8")).hexdigest()
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
