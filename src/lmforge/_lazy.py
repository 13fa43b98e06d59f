"""Import optional dependencies lazily, with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from lmforge.errors import MissingExtraError


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'lmforge[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc
