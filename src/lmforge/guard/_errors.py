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
    """Data failed an integrity check: a tampered file, a bad signature, a broken audit chain."""


class CryptoKeyError(GuardError):
    """A key is missing, malformed, revoked or wrong for the data (never shows the key itself)."""


class UnsafeModelError(GuardError):
    """A model file is pickle-based or malformed and was refused without being loaded."""
