"""Compressors by registry name: every built-in one is imported (``_plugins.py``) and looked up here.

Unknown names fail loudly and list what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lmforge.compress._plugins  # noqa: F401  (each module registers itself)
from lmforge.compress._register import COMPRESSORS, GENERATOR_COMPRESSORS, Compressor, GeneratorCompressor
from lmforge.errors import ConfigError
from lmforge.rundir import FP32

__all__ = ["get_compressor", "get_generator_compressor", "resolve_names"]


def get_compressor(name: str) -> Compressor:
    """The registered compressor ``name``; unknown names list the registered ones."""
    factory = COMPRESSORS.get(name)
    if factory is None:
        raise ConfigError(f"Unknown compressor '{name}'. Available: {', '.join(sorted(COMPRESSORS))}.")
    return factory()


def get_generator_compressor(name: str) -> GeneratorCompressor:
    """The registered compressor of generative runs ``name``; unknown names list the registered ones."""
    factory = GENERATOR_COMPRESSORS.get(name)
    if factory is None:
        raise ConfigError(f"Unknown compressor '{name}' for a generative run. Available: "
                          f"{', '.join(sorted(GENERATOR_COMPRESSORS))}.")
    return factory()


def resolve_names(only: tuple[str, ...] | None,
                  registry: Mapping[str, Callable[[], Any]] = COMPRESSORS) -> list[str]:
    """Names to build, in build order: every requested one plus the variants they build on.

    Args:
        only: the names asked for (None: every registered compressor).
        registry: :data:`COMPRESSORS` (classifiers) or :data:`GENERATOR_COMPRESSORS`.

    Raises:
        ConfigError: one or more names are not registered (all of them are listed).
    """
    wanted = list(registry) if only is None else list(only)
    unknown = [n for n in wanted if n not in registry]
    if unknown:
        what = " for a generative run" if registry is GENERATOR_COMPRESSORS else ""
        raise ConfigError(
            f"Unknown compressor{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)} in --only"
            f"{what}. Available: {', '.join(sorted(registry))}."
        )
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:  # a registration bug, not a user error
            raise ValueError(f"compressor sources form a cycle: {' -> '.join((*chain, name))}")
        source = registry[name]().source
        if source != FP32:
            visit(source, (*chain, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order
