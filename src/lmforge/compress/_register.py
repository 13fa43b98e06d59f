"""The :class:`Compressor` Protocol and the registry every compressor module registers into.

Each compressor lives in its own module and registers itself with :func:`register_compressor`;
``_plugins.py`` imports them all and ``_registry.py`` looks them up, so a compressor module
imports only this one and the import graph has no cycle. A compressor turns a source model
(the run's fp32 model, or another variant such as ``distilled``) into one variant folder.

A generative run (a causal LM) has compressors of its own (:class:`GeneratorCompressor`, in
:data:`GENERATOR_COMPRESSORS`): they read a :class:`~lmforge.compress._gen_context.GenContext`
and write a folder :func:`lmforge.predict.load_generator` loads. A name may be in both
registries (``merged``, ``torch-bf16``): the run's kind says which one applies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lmforge.rundir import FP32

if TYPE_CHECKING:
    from lmforge.compress._context import CompressContext
    from lmforge.compress._gen_context import GenContext

__all__ = [
    "COMPRESSORS",
    "GENERATOR_COMPRESSORS",
    "Compressor",
    "GeneratorCompressor",
    "register_compressor",
    "register_generator_compressor",
]


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


class GeneratorCompressor(Protocol):
    """How one variant of a generative run is built (the fields of :class:`Compressor`, on a :class:`GenContext`)."""

    @property
    def name(self) -> str: ...

    @property
    def format(self) -> str:
        """``torch``: ``model.safetensors`` + config + tokenizer + ``lmforge_model.json``."""
        ...

    @property
    def source(self) -> str: ...

    @property
    def extras(self) -> tuple[tuple[str, str], ...]: ...

    @property
    def description(self) -> str: ...

    def skip_reason(self, ctx: GenContext) -> str | None: ...

    def build(self, ctx: GenContext, out: Path) -> dict[str, Any]: ...


GENERATOR_COMPRESSORS: dict[str, Callable[[], GeneratorCompressor]] = {}


def register_generator_compressor(
    name: str,
) -> Callable[[Callable[[], GeneratorCompressor]], Callable[[], GeneratorCompressor]]:
    """Class decorator registering a compressor of generative runs under ``name``."""

    def deco(factory: Callable[[], GeneratorCompressor]) -> Callable[[], GeneratorCompressor]:
        if name in GENERATOR_COMPRESSORS or name == FP32:
            raise ValueError(f"generator compressor '{name}' is registered twice")
        GENERATOR_COMPRESSORS[name] = factory
        return factory

    return deco
