"""The one error hierarchy of lmforge.

Every error a user can cause is an :class:`LmforgeError`. The CLI turns these into a short
message on stderr and exit code 2, without a traceback; anything else is a bug and keeps its
traceback. Messages say what went wrong, show the bad value and say how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "LmforgeError",
    "MissingExtraError",
    "NotFittedError",
    "RunDirError",
]


class LmforgeError(Exception):
    """Base class of every error a user can cause (bad spec, bad data, missing extra...)."""


class ConfigError(LmforgeError, ValueError):
    """The spec, or an override of it, is malformed. Carries every problem found at once."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the spec:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(message)


class DataError(LmforgeError, ValueError):
    """The input data cannot be used as asked (missing file or column, bad encoding, one class...)."""


class RunDirError(LmforgeError):
    """A run directory is missing, incomplete, or lacks the artifact a stage needs."""


class NotFittedError(LmforgeError, AttributeError):
    """A stateful transform was used before ``fit``."""


class MissingExtraError(LmforgeError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed. "
            f"Install it with: pip install 'lmforge[{extra}]'"
        )
