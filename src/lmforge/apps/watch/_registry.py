"""The spike-detector registry: string names that fail loudly and list what exists.

A detector is a class registered with :func:`register_spike_detector`; it is built per topic
(``get_spike_detector(name, threshold=..., baseline=...)``) and fed each window's negative share
in time order. :mod:`lmforge.apps.watch._detectors` registers the shipped ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Protocol

from lmforge.errors import ConfigError

__all__ = ["SPIKE_DETECTORS", "SpikeDetector", "get_spike_detector", "register_spike_detector"]


class SpikeDetector(Protocol):
    """Scores each window against what came before it; the state is the detector's own."""

    name: str
    default_threshold: float

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        """Take one window's negative share (over ``n`` texts); return ``(baseline, score)``.

        ``score > threshold`` means the window is anomalous. ``(None, None)``: not enough history
        yet to judge. A window judged anomalous does not move the baseline, so a surge cannot
        teach the detector that surges are normal.
        """
        ...


SPIKE_DETECTORS: dict[str, type] = {}
"""Registered detector name -> class."""


def register_spike_detector(name: str) -> Callable[[type], type]:
    """Class decorator: register a detector under ``name`` (a second one of that name is an error)."""

    def wrap(cls: type) -> type:
        if name in SPIKE_DETECTORS:
            raise ValueError(f"spike detector {name!r} is registered twice")
        cls.name = name  # type: ignore[attr-defined]
        SPIKE_DETECTORS[name] = cls
        return cls

    return wrap


def get_spike_detector(name: str, *, threshold: float | None = None, baseline: int = 8,
                       **options: Any) -> SpikeDetector:
    """A fresh detector by registry name (``threshold`` None: its default).

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    cls = SPIKE_DETECTORS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, list(SPIKE_DETECTORS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown watch.detector {name!r}.{hint} Available: {', '.join(sorted(SPIKE_DETECTORS))}.")
    detector: SpikeDetector = cls(threshold=threshold, baseline=baseline, **options)
    return detector
