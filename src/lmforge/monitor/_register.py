"""The table of registered drift detectors and the decorator that fills it.

Detector modules import only this (not the lookups in ``_registry``), so registering a
detector never imports the modules that load every detector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from lmforge.monitor._drift import DriftDetector

__all__ = ["DETECTORS", "register_detector"]

DETECTORS: dict[str, type[DriftDetector]] = {}
"""Registered detector classes by name.

The shipped ones register when ``lmforge.monitor._plugins`` is imported (``_registry`` does that).
"""

T = TypeVar("T", bound=type[DriftDetector])


def register_detector(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`DriftDetector` subclass under ``name``."""

    def decorate(cls: T) -> T:
        if name in DETECTORS and DETECTORS[name] is not cls:
            raise ValueError(
                f"A drift detector named {name!r} is already registered ({DETECTORS[name].__name__})."
            )
        cls.name = name
        DETECTORS[name] = cls
        return cls

    return decorate
