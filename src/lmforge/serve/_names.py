"""What a model name may look like: it goes into URLs, metric labels and Ray application names."""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "name_problem"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a model, or None when it can."""
    if not isinstance(name, str) or not _NAME.match(name):
        return (
            f"model name {str(name)[:80]!r} must be 1-64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return None
