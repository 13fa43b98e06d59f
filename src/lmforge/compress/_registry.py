"""Compressors by registry name: every built-in one is imported (``_plugins.py``) and looked up here.

Unknown names fail loudly and list what exists.
"""

from __future__ import annotations

import lmforge.compress._plugins  # noqa: F401  (each module registers itself)
from lmforge.compress._register import COMPRESSORS, Compressor
from lmforge.errors import ConfigError
from lmforge.rundir import FP32

__all__ = ["get_compressor", "resolve_names"]


def get_compressor(name: str) -> Compressor:
    """The registered compressor ``name``; unknown names list the registered ones."""
    factory = COMPRESSORS.get(name)
    if factory is None:
        raise ConfigError(f"Unknown compressor '{name}'. Available: {', '.join(sorted(COMPRESSORS))}.")
    return factory()


def resolve_names(only: tuple[str, ...] | None) -> list[str]:
    """Names to build, in build order: every requested one plus the variants they build on.

    Args:
        only: the names asked for (None: every registered compressor).

    Raises:
        ConfigError: one or more names are not registered (all of them are listed).
    """
    wanted = list(COMPRESSORS) if only is None else list(only)
    unknown = [n for n in wanted if n not in COMPRESSORS]
    if unknown:
        raise ConfigError(
            f"Unknown compressor{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)} in --only. "
            f"Available: {', '.join(sorted(COMPRESSORS))}."
        )
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:  # a registration bug, not a user error
            raise ValueError(f"compressor sources form a cycle: {' -> '.join((*chain, name))}")
        source = COMPRESSORS[name]().source
        if source != FP32:
            visit(source, (*chain, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order
