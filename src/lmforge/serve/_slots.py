"""What serves one model name: a :class:`Slot` with a stable and an optional canary :class:`Loaded`.

A :class:`Loaded` is one model version ready to serve: its engine, its micro-batcher and its
recent outcomes (what the canary judge compares). :meth:`Slot.pick` sends ``percent`` % of
requests to the canary and the rest to the stable version.
"""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass, field
from typing import Any

from lmforge.serve._batcher import MicroBatcher
from lmforge.serve._registry_queries import VersionInfo

__all__ = ["Loaded", "Slot"]


@dataclass(eq=False)
class Loaded:
    """One model version ready to serve."""

    info: VersionInfo
    engine: Any
    batcher: MicroBatcher
    outcomes: collections.deque[bool]
    """Recent request outcomes, True for a failed model call."""
    loaded_at: float = field(default_factory=time.time)
    length_stops: collections.deque[bool] = field(default_factory=lambda: collections.deque(maxlen=1000))
    """A generative version's recent answers, True for one cut at its token limit (``length``)."""

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def labels(self) -> list[str]:
        return list(self.engine.labels)

    def error_rate(self) -> float:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    def length_stop_rate(self) -> float:
        return sum(self.length_stops) / len(self.length_stops) if self.length_stops else 0.0


@dataclass(eq=False)
class Slot:
    """What serves one model name."""

    name: str
    stable: Loaded | None = None
    canary: Loaded | None = None
    percent: float = 0.0
    load_error: str | None = None

    def pick(self) -> Loaded | None:
        if self.canary is not None and self.percent > 0 and random.random() * 100 < self.percent:
            return self.canary
        return self.stable
