"""Errors of the guard package, all :class:`~lmforge.errors.LmforgeError` (the CLI exits 2 on them).

Messages never carry key material, passphrases or the PII that was found: they name the
file, record or key id, say what is wrong and how to fix it.
"""

from __future__ import annotations

from lmforge.errors import LmforgeError

__all__ = ["CryptoKeyError", "GuardError", "IntegrityError", "UnsafeModelError"]


class GuardError(LmforgeError):
    """Base class of the guard errors."""


class IntegrityError(GuardError):
    """Data failed an integrity check: a tampered file, a bad signature, a broken audit chain.

    Args:
        message: What is wrong, naming the file or record.
        tail: What was there checked out, but its end could not be confirmed, so data may
            have been cut off (an audit log whose head is missing, forged or behind).
    """

    def __init__(self, message: str, *, tail: bool = False) -> None:
        super().__init__(message)
        self.tail = tail


class CryptoKeyError(GuardError):
    """A key is missing, malformed, revoked or wrong for the data (never shows the key itself)."""


class UnsafeModelError(GuardError):
    """A model file is pickle-based or malformed and was refused without being loaded."""
