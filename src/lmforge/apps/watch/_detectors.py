"""The shipped spike detectors, each registered by name (see :mod:`lmforge.apps.watch._registry`).

All of them watch one series per topic: the window's ``watch.metric`` (negative share, negative
count or mean negative probability). The statistical ones compare it with a trailing baseline of
the last ``baseline`` windows that were not anomalous. The spread a window is judged by is the
baseline's own variance plus the sampling noise of the window itself (binomial ``p (1 - p) / n``
for a share or a mean probability, Poisson ``mean`` for a count): eight calm windows that happen
to agree exactly must not turn the next ordinary one into a 40-sigma event, and a share over 40
texts at 15 % is skewed enough that the baseline's spread alone fired on 1 % of calm windows.

- ``zscore``: (share - baseline mean) / baseline spread, per window.
- ``ewma``: the EWMA control chart (Roberts, 1959): an exponentially weighted mean of the share
  against its control limit, in units of the limit's sigma, ``sqrt(lambda / (2 - lambda))``.
- ``cusum``: Page's one-sided upper CUSUM of the standardized share, ``S = max(0, S + z - k)``,
  held at ``h`` while an alarm goes on and restarted at 0 when it ends (a restart at the alarm made a
  lasting shift alarm every other window; holding on made one surge's memory alarm again).
- ``page-hinkley``: the Page-Hinkley test: the cumulative deviation of the standardized share
  from its running mean (not the trailing one), minus its running minimum; reset after an alarm.
- ``fixed``: the share itself against a fixed threshold (the rule the others are measured against).
"""

from __future__ import annotations

import math
from collections import deque

from lmforge.apps.watch._registry import register_spike_detector

__all__ = ["CusumDetector", "EwmaDetector", "FixedDetector", "PageHinkleyDetector", "ZScoreDetector"]

_SIGMA_FLOOR = 0.01  # a share's spread below one point is taken as one point
_P_CLIP = 0.02  # the binomial floor uses a baseline share of at least 2 %: a calm 0 % topic still has noise


class _Trailing:
    """The last ``size`` calm values: their mean, and their spread plus the sampling noise at ``n``."""

    def __init__(self, size: int, counts: bool) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.needed = max(2, size // 2)
        self.counts = counts

    @property
    def ready(self) -> bool:
        return len(self.values) >= self.needed

    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def sigma(self, n: int) -> float:
        mu = self.mean()
        var = sum((v - mu) ** 2 for v in self.values) / (len(self.values) - 1)
        if self.counts:
            return math.sqrt(var + max(mu, 1.0))
        p = min(max(mu, _P_CLIP), 1 - _P_CLIP)
        return max(math.sqrt(var + p * (1 - p) / max(n, 1)), _SIGMA_FLOOR)


class _Base:
    name = ""
    default_threshold = 3.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share") -> None:
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        self.trailing = _Trailing(baseline, counts=metric == "negative_count")


@register_spike_detector("zscore")
class ZScoreDetector(_Base):
    """Rolling z-score of the negative share against the trailing baseline (threshold: z, default 3)."""

    default_threshold = 3.0

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.values.append(value)
            return None, None
        mu = self.trailing.mean()
        score = (value - mu) / self.trailing.sigma(n)
        if score <= self.threshold:
            self.trailing.values.append(value)
        return mu, score


@register_spike_detector("ewma")
class EwmaDetector(_Base):
    """EWMA control chart (threshold: control-limit sigmas L, default 3; ``lam`` the weight, 0.3)."""

    default_threshold = 3.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share",
                 lam: float = 0.3) -> None:
        super().__init__(threshold, baseline, metric)
        self.lam = lam
        self.z: float | None = None
        self.alarm = False

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.values.append(value)
            return None, None
        mu = self.trailing.mean()
        previous = mu if self.z is None else self.z
        self.z = self.lam * value + (1 - self.lam) * previous
        score = (self.z - mu) / (self.trailing.sigma(n) * math.sqrt(self.lam / (2 - self.lam)))
        if score > self.threshold:
            # Held at the control limit while the surge goes on (one incident), restarted at the
            # baseline when it ends, so the surge's memory cannot fire again later.
            self.z, self.alarm = mu + self.threshold * (self.z - mu) / score, True
        else:
            self.z = None if self.alarm else self.z
            self.alarm = False
            self.trailing.values.append(value)
        return mu, score


@register_spike_detector("cusum")
class CusumDetector(_Base):
    """One-sided upper CUSUM (threshold: h in sigmas, default 5; ``k`` the slack, 0.5 sigma)."""

    default_threshold = 5.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share",
                 k: float = 0.5) -> None:
        super().__init__(threshold, baseline, metric)
        self.k = k
        self.s = 0.0
        self.alarm = False

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.values.append(value)
            return None, None
        mu = self.trailing.mean()
        z = (value - mu) / self.trailing.sigma(n)
        score = max(0.0, self.s + z - self.k)
        if score > self.threshold:
            self.s, self.alarm = self.threshold, True  # held at h while the surge goes on: one incident
        else:
            self.s = 0.0 if self.alarm else score  # restarted when it ends (Page, 1954)
            self.alarm = False
            self.trailing.values.append(value)
        return mu, score


@register_spike_detector("page-hinkley")
class PageHinkleyDetector(_Base):
    """Page-Hinkley test on the standardized share (threshold: lambda, default 5; ``delta`` 0.5)."""

    default_threshold = 5.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share",
                 delta: float = 0.5) -> None:
        super().__init__(threshold, baseline, metric)
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        self.count, self.mean, self.m, self.m_min = 0, 0.0, 0.0, 0.0

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.values.append(value)
            return None, None
        self.count += 1
        self.mean += (value - self.mean) / self.count
        self.m += (value - self.mean) / self.trailing.sigma(n) - self.delta
        self.m_min = min(self.m_min, self.m)
        baseline, score = self.mean, self.m - self.m_min
        if score > self.threshold:
            self._reset()
        else:
            self.trailing.values.append(value)
        return baseline, score


@register_spike_detector("fixed")
class FixedDetector(_Base):
    """The metric against a fixed threshold (default 0.5, a share); no baseline."""

    default_threshold = 0.5

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        return None, value
