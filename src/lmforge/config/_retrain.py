"""The ``retrain:`` section (``lmforge retrain``): how a run is retrained from production feedback."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lmforge.errors import ConfigError

__all__ = ["RetrainConfig"]


@dataclass
class RetrainConfig:
    """Retraining a served run on the labels its feedback gave (see `lmforge retrain`)."""

    max_forgetting: float = 1.0
    """Points of accuracy on the parent's own test split the retrained run may lose and still be
    promoted (registered as a canary); more and `lmforge retrain --register` refuses."""
    fresh_test_share: float = 0.2
    """Share of the feedback (seeded by `data.seed`) held out as a fresh test set, never trained on."""
    start: Literal["parent", "base"] = "parent"
    """`parent`: warm-start from the parent run's fine-tuned weights; `base`: from `model.name`."""
    min_feedback: int = 10
    """Fewest usable feedback labels (after dedupe and the leakage check) worth a retraining."""

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.max_forgetting, bool) or not isinstance(self.max_forgetting, int | float) \
                or not math.isfinite(self.max_forgetting) or self.max_forgetting < 0:
            problems.append(f"retrain.max_forgetting must be a number of points >= 0, got {self.max_forgetting!r}.")
        share = self.fresh_test_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            problems.append(f"retrain.fresh_test_share must be in [0, 1), got {share!r}.")
        if self.start not in ("parent", "base"):
            problems.append(f"retrain.start must be parent or base, got {self.start!r}.")
        if isinstance(self.min_feedback, bool) or not isinstance(self.min_feedback, int) or self.min_feedback < 1:
            problems.append(f"retrain.min_feedback must be an integer >= 1, got {self.min_feedback!r}.")
        if problems:
            raise ConfigError(problems)
