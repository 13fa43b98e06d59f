"""The shipped spike detectors, each registered by name (see :mod:`lmforge.apps.watch._registry`).

All of them watch one series per topic: the window's ``watch.metric`` (negative share, negative
count or mean negative probability). The statistical ones judge it on a variance-stabilized scale
(Anscombe: ``2 asin(sqrt((k + 3/8) / (n + 3/4)))`` for a share of ``k`` in ``n`` texts, whose
sampling variance is about ``1 / (n + 1/2)`` whatever the share; ``2 sqrt(count + 3/8)``, variance
about 1, for a count), where a binomial share's long right tail does not pass for a surge (13 of
40 texts against a 15 % baseline, a 2 % event, was a 3.2-sigma window on the share itself).

They compare it with a trailing baseline of the last ``baseline`` windows that were not anomalous,
summarized robustly, by its median and median absolute deviation, so a surge that was missed
(below the threshold), and so entered the baseline, does not lift the centre and widen the spread
for the windows after it. (With the mean and standard deviation, surges two windows apart hid each
other: on a simulated stream of 30 texts an hour at a 9.6 % negative share, with surges of 30-100 %
more texts, 75 % of them read as negative, the z-score's recall was 0.27; it is 0.39 here, with
calm windows firing at 0.04 % against 0.06 %: the smallest surges are about 2.5 sigmas, under the
default 3, and the threshold is how a user trades them against false alarms.) The spread a window is
judged by is the baseline's variation beyond sampling noise, plus this window's own sampling noise,
plus the uncertainty of the median itself: eight calm windows that happen to agree exactly must
not turn the next ordinary one into a 40-sigma event, and the baseline's noise is not counted twice.
The ``baseline`` a verdict reports is in the metric's own units (the baseline's median share).

- ``zscore``: (window - baseline median) / spread, per window.
- ``ewma``: the EWMA control chart (Roberts, 1959): an exponentially weighted mean of the window
  against its control limit, in units of the limit's sigma, ``sqrt(lambda / (2 - lambda))``.
- ``cusum``: Page's one-sided upper CUSUM of the standardized window, ``S = max(0, S + z - k)``,
  held at ``h`` while an alarm goes on and restarted at 0 when it ends (a restart at the alarm made a
  lasting shift alarm every other window; holding on made one surge's memory alarm again). ``h`` is
  4 by default, the usual choice with ``k`` 0.5 (at 5 a surge of one window needs 5.5 sigmas).
- ``page-hinkley``: the Page-Hinkley test: the cumulative deviation of the standardized window
  from its running mean (not the trailing one), minus its running minimum; reset after an alarm.
- ``fixed``: the metric itself against a fixed threshold (the rule the others are measured against).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from lmforge.apps.watch._registry import register_spike_detector

__all__ = ["CusumDetector", "EwmaDetector", "FixedDetector", "PageHinkleyDetector", "ZScoreDetector"]

_MAD_TO_SD = 1.4826  # MAD of a normal sample x this = its standard deviation
_MEDIAN_EFFICIENCY = math.pi / 2  # the variance of a sample median over that of the mean (normal data)


class _Trailing:
    """The last ``size`` calm windows on the stabilized scale: a robust centre and spread, and the
    sampling noise a window of ``n`` texts adds."""

    def __init__(self, size: int, counts: bool) -> None:
        self.scaled: deque[float] = deque(maxlen=size)
        self.raw: deque[float] = deque(maxlen=size)
        self.sizes: deque[int] = deque(maxlen=size)
        self.needed = max(2, size // 2)
        self.counts = counts

    @property
    def ready(self) -> bool:
        return len(self.scaled) >= self.needed

    def scale(self, value: float, n: int) -> float:
        """``value`` (of a window of ``n`` texts) on the variance-stabilized scale."""
        if self.counts:
            return 2 * math.sqrt(max(value, 0.0) + 3 / 8)
        n = max(n, 1)
        return 2 * math.asin(math.sqrt((min(max(value, 0.0), 1.0) * n + 3 / 8) / (n + 3 / 4)))

    def noise(self, n: int) -> float:
        """The sampling variance of a window of ``n`` texts on that scale."""
        return 1.0 if self.counts else 1 / (max(n, 1) + 0.5)

    def add(self, value: float, n: int) -> None:
        self.scaled.append(self.scale(value, n))
        self.raw.append(value)
        self.sizes.append(max(n, 1))

    def centre(self) -> float:
        """The baseline's median on the stabilized scale (a missed surge in it does not move it)."""
        return statistics.median(self.scaled)

    def baseline(self) -> float:
        """The baseline's median in the metric's own units, for the verdict."""
        return statistics.median(self.raw)

    def sigma(self, n: int) -> float:
        """The spread a window of ``n`` texts is judged by, on the stabilized scale."""
        centre = self.centre()
        spread = (_MAD_TO_SD * statistics.median(abs(v - centre) for v in self.scaled)) ** 2
        base_noise = sum(self.noise(k) for k in self.sizes) / len(self.sizes)
        extra = max(0.0, spread - base_noise)  # between-window variation beyond sampling noise
        of_centre = _MEDIAN_EFFICIENCY * max(spread, base_noise) / len(self.scaled)
        return math.sqrt(extra + self.noise(n) + of_centre)

    def z(self, value: float, n: int) -> float:
        """The window's distance from the baseline's median, in sigmas."""
        return (self.scale(value, n) - self.centre()) / self.sigma(n)


class _Base:
    name = ""
    default_threshold = 3.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share") -> None:
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        self.trailing = _Trailing(baseline, counts=metric == "negative_count")


@register_spike_detector("zscore")
class ZScoreDetector(_Base):
    """Rolling z-score of the window against the trailing baseline (threshold: z, default 3)."""

    default_threshold = 3.0

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.add(value, n)
            return None, None
        baseline, score = self.trailing.baseline(), self.trailing.z(value, n)
        if score <= self.threshold:
            self.trailing.add(value, n)
        return baseline, score


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
            self.trailing.add(value, n)
            return None, None
        mu, baseline = self.trailing.centre(), self.trailing.baseline()
        previous = mu if self.z is None else self.z
        self.z = self.lam * self.trailing.scale(value, n) + (1 - self.lam) * previous
        score = (self.z - mu) / (self.trailing.sigma(n) * math.sqrt(self.lam / (2 - self.lam)))
        if score > self.threshold:
            # Held at the control limit while the surge goes on (one incident), restarted at the
            # baseline when it ends, so the surge's memory cannot fire again later.
            self.z, self.alarm = mu + self.threshold * (self.z - mu) / score, True
        else:
            self.z = None if self.alarm else self.z
            self.alarm = False
            self.trailing.add(value, n)
        return baseline, score


@register_spike_detector("cusum")
class CusumDetector(_Base):
    """One-sided upper CUSUM (threshold: h in sigmas, default 4; ``k`` the slack, 0.5 sigma)."""

    default_threshold = 4.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share",
                 k: float = 0.5) -> None:
        super().__init__(threshold, baseline, metric)
        self.k = k
        self.s = 0.0
        self.alarm = False

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.add(value, n)
            return None, None
        baseline = self.trailing.baseline()
        score = max(0.0, self.s + self.trailing.z(value, n) - self.k)
        if score > self.threshold:
            self.s, self.alarm = self.threshold, True  # held at h while the surge goes on: one incident
        else:
            self.s = 0.0 if self.alarm else score  # restarted when it ends (Page, 1954)
            self.alarm = False
            self.trailing.add(value, n)
        return baseline, score


@register_spike_detector("page-hinkley")
class PageHinkleyDetector(_Base):
    """Page-Hinkley test on the standardized window (threshold: lambda, default 4; ``delta`` 0.5)."""

    default_threshold = 4.0

    def __init__(self, threshold: float | None = None, baseline: int = 8, metric: str = "negative_share",
                 delta: float = 0.5) -> None:
        super().__init__(threshold, baseline, metric)
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        self.count, self.mean, self.raw_mean, self.m, self.m_min = 0, 0.0, 0.0, 0.0, 0.0

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        if not self.trailing.ready:
            self.trailing.add(value, n)
            return None, None
        self.count += 1
        scaled = self.trailing.scale(value, n)
        self.mean += (scaled - self.mean) / self.count
        self.raw_mean += (value - self.raw_mean) / self.count
        self.m += (scaled - self.mean) / self.trailing.sigma(n) - self.delta
        self.m_min = min(self.m_min, self.m)
        baseline, score = self.raw_mean, self.m - self.m_min
        if score > self.threshold:
            self._reset()
        else:
            self.trailing.add(value, n)
        return baseline, score


@register_spike_detector("fixed")
class FixedDetector(_Base):
    """The metric against a fixed threshold (default 0.5, a share); no baseline."""

    default_threshold = 0.5

    def step(self, value: float, n: int) -> tuple[float | None, float | None]:
        return None, value
