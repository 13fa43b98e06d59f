"""Text handling of the monitor: the stored-text policy and the tokenizer of the OOV detector."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

__all__ = ["TextPolicy", "tokens"]

log = logging.getLogger(__name__)

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# One token per CJK character (those scripts have no spaces), else a run of letters/digits
# that stops at a CJK character; digit-only runs become one placeholder, so flight numbers
# and prices do not inflate the out-of-vocabulary rate.
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_DIGITS = re.compile(r"^\d+$")
_AD = b"lmforge.monitor.text"  # binds ciphertexts to this column: a token moved elsewhere fails to decrypt


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``; each CJK character is a token; numbers become ``<num>``."""
    return ["<num>" if _DIGITS.match(t) else t for t in _TOKEN.findall(text.lower())]


class TextPolicy:
    """Turns an input text into what the store keeps: ``(text_hash, stored_text)``.

    ``text_hash`` is the SHA-256 of the PII-masked text, so equal texts share a hash while
    the hash of a phone number alone cannot be reversed by hashing every phone number.
    """

    def __init__(self, policy: str = "redact", key_file: str | None = None) -> None:
        from lmforge.monitor._settings import TEXT_POLICIES

        if policy not in TEXT_POLICIES:
            from lmforge.errors import ConfigError

            raise ConfigError(f"text_policy must be one of {', '.join(TEXT_POLICIES)}, got {policy!r}.")
        self.policy = policy
        self._encryptor: Any = None
        if "encrypt" in policy:
            from lmforge.guard import load_encryptor

            self._encryptor = load_encryptor(key_file)  # fails now, at start, not on the writer thread
        if policy == "none":
            log.warning(
                "monitor text_policy 'none': input texts are stored in clear, personal data included."
            )

    def apply(self, text: str) -> tuple[str, str | None]:
        """``(text_hash, stored_text)``; ``stored_text`` is None under the ``hash`` policy."""
        from lmforge.guard.pii import redact

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
