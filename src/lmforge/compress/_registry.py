"""Compressors, by registry name.

Each compressor lives in its own module and registers itself with
:func:`register_compressor`; the stage imports them all (``_plugins.py``). A compressor
turns a source model (the run's fp32 model, or another variant such as ``distilled``)
into one variant folder. Unknown names fail loudly and list what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lmforge.errors import ConfigError
from lmforge.rundir import FP32

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext

__all__ = ["COMPRESSORS", "Compressor", "get_compressor", "register_compressor", "resolve_names"]


class Compressor(Protocol):
    """How one variant is built from a source model (class attributes satisfy the properties)."""

    @property
    def name(self) -> str:
        """Registry name, also the variant's folder under ``RUN/compressed/``."""
        ...

    @property
    def format(self) -> str:
        """What the variant folder holds: ``onnx`` (``model.onnx``) or ``torch`` (``model.safetensors`` + config)."""
        ...

    @property
    def source(self) -> str:
        """``fp32`` (the run's model) or the name of the variant this one builds on."""
        ...

    @property
    def extras(self) -> tuple[tuple[str, str], ...]:
        """``(module, extra)`` pairs the compressor imports; checked before anything is written."""
        ...

    @property
    def tolerance(self) -> float:
        """Largest absolute difference of any class probability from fp32 on held-out texts
        that the contract test accepts. Exact conversions are tight; retrained ones are loose."""
        ...

    @property
    def description(self) -> str:
        """One line for the report."""
        ...

    def skip_reason(self, ctx: CompressContext) -> str | None:
        """Why this variant does not apply here (None: build it)."""
        ...

    def check(self, ctx: CompressContext) -> None:
        """Raise an :class:`~lmforge.errors.LmforgeError` for a user error, before anything is written."""
        ...

    def build(self, ctx: CompressContext, out: Path) -> dict[str, Any]:
        """Write the variant's model files into ``out``; return what to record in ``variant.json``."""
        ...


COMPRESSORS: dict[str, Callable[[], Compressor]] = {}


def register_compressor(name: str) -> Callable[[Callable[[], Compressor]], Callable[[], Compressor]]:
    """Class decorator registering a compressor under ``name``."""

    def deco(factory: Callable[[], Compressor]) -> Callable[[], Compressor]:
        if name in COMPRESSORS or name == FP32:
            raise ValueError(f"compressor '{name}' is registered twice")
        COMPRESSORS[name] = factory
        return factory

    return deco


def _load_plugins() -> None:
    import lmforge.compress._plugins  # noqa: F401  (each module registers itself)


def get_compressor(name: str) -> Compressor:
    """The registered compressor ``name``; unknown names list the registered ones."""
    _load_plugins()
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
    _load_plugins()
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
