"""Spike detectors on synthetic series with known change points, stationary series, min-count and cooldown."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmforge.apps.watch import SPIKE_DETECTORS, WindowStats, detect, get_spike_detector
from lmforge.errors import ConfigError

DAY = 86400.0
STATISTICAL = ("zscore", "ewma", "cusum", "page-hinkley")


def _windows(negatives: list[int], n: int | list[int] = 40) -> list[WindowStats]:
    counts = n if isinstance(n, list) else [n] * len(negatives)
    return [WindowStats(start=i * DAY, end=(i + 1) * DAY, topic="all", n=c, negative=k)
            for i, (k, c) in enumerate(zip(negatives, counts, strict=True))]


def _calm(rng: np.random.Generator, size: int, n: int = 40, p: float = 0.15) -> list[int]:
    return [int(k) for k in rng.binomial(n, p, size=size)]


def _alerts(windows: list[WindowStats], name: str, **kw: object) -> list[int]:
    opts = {"threshold": None, "min_count": 10, "cooldown_s": 0.0, "baseline": 8, **kw}
    return [i for i, v in enumerate(detect(windows, name, **opts)) if v.alert]  # type: ignore[arg-type]


def test_the_registry_lists_every_shipped_detector_and_refuses_unknown_names() -> None:
    assert sorted(SPIKE_DETECTORS) == ["cusum", "ewma", "fixed", "page-hinkley", "zscore"]
    with pytest.raises(ConfigError, match=r"Unknown watch.detector 'zscor'\. Did you mean 'zscore'\? Available: "
                                          r"cusum, ewma, fixed, page-hinkley, zscore\."):
        get_spike_detector("zscor")


@pytest.mark.parametrize("name", STATISTICAL)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_surge_fires_exactly_in_its_window(name: str, seed: int) -> None:
    """Calm binomial shares around 15 %, then one window at 60 %: the alert is that window, and only it."""
    rng = np.random.default_rng(seed)
    negatives = _calm(rng, 30)
    negatives[20] = 24  # 60 % of 40
    assert _alerts(_windows(negatives), name) == [20]


def test_the_zscore_of_a_window_is_its_distance_from_the_trailing_baseline_in_sigmas() -> None:
    # Eight calm windows alternating 4 and 8 negatives of 40 (shares 0.1 / 0.2), then 20 of 40.
    negatives = [4, 8] * 4 + [20]
    verdicts = detect(_windows(negatives), "zscore", threshold=None, min_count=10, cooldown_s=0.0, baseline=8)
    last = verdicts[-1]
    mean, sd = 0.15, math.sqrt(sum((s - 0.15) ** 2 for s in [0.1, 0.2] * 4) / 7)
    assert last.baseline == pytest.approx(mean)
    # the spread: the baseline's variance plus this window's binomial noise
    assert last.score == pytest.approx((0.5 - mean) / math.sqrt(sd**2 + 0.15 * 0.85 / 40))
    assert last.alert and [v.alert for v in verdicts[:-1]] == [False] * 8
    assert last.alert_line("zscore") == {
        "time": "1970-01-10T00:00:00+00:00", "window_start": "1970-01-09T00:00:00+00:00", "topic": "all",
        "detector": "zscore", "metric": "negative_share", "value": 0.5, "baseline": pytest.approx(mean),
        "score": last.score, "n": 40,
    }


@pytest.mark.parametrize("name", STATISTICAL)
def test_a_level_shift_is_one_incident_with_one_alert(name: str) -> None:
    """From window 20 on the share stays at 60 %: one alert at 20, none for the windows after it."""
    rng = np.random.default_rng(7)
    negatives = _calm(rng, 20) + [24] * 10
    assert _alerts(_windows(negatives), name) == [20]


@pytest.mark.parametrize("name", STATISTICAL)
def test_stationary_series_rarely_fire(name: str) -> None:
    """200 seeds x 60 calm windows: the false alerts per judged window stay under 1 %."""
    alerts = judged = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        windows = _windows(_calm(rng, 60))
        verdicts = detect(windows, name, threshold=None, min_count=10, cooldown_s=0.0, baseline=8)
        alerts += sum(v.alert for v in verdicts)
        judged += sum(v.score is not None for v in verdicts)
    assert judged == 200 * (60 - 4)  # the first baseline // 2 windows only build the baseline
    assert alerts / judged < 0.01, f"{name}: {alerts} false alerts in {judged} windows"


def test_a_window_under_min_count_cannot_fire_and_does_not_move_the_baseline() -> None:
    negatives = [6] * 10 + [3] + [6] * 3
    counts = [40] * 10 + [3] + [40] * 3  # window 10: 3 of 3 negative, a share of 100 %
    verdicts = detect(_windows(negatives, counts), "zscore", threshold=None, min_count=10, cooldown_s=0.0, baseline=8)
    assert verdicts[10].score is None and not verdicts[10].alert
    assert [v.alert for v in verdicts] == [False] * 14
    assert verdicts[11].baseline == pytest.approx(0.15)  # the 3-text window left no trace
    # with min_count 3 the same window is judged, and fires
    assert _alerts(_windows(negatives, counts), "zscore", min_count=3) == [10]


def test_cooldown_suppresses_a_second_incident_inside_it() -> None:
    negatives = [6] * 10 + [24, 6, 24, 6, 6, 6, 24]  # incidents at 10, 12 and 16
    windows = _windows(negatives)
    assert _alerts(windows, "zscore") == [10, 12, 16]
    assert _alerts(windows, "zscore", cooldown_s=3 * DAY) == [10, 16]  # 12 ends 2 days after 10's alert
    verdicts = detect(windows, "zscore", threshold=None, min_count=10, cooldown_s=3 * DAY, baseline=8)
    assert verdicts[12].suppressed and verdicts[12].anomalous and not verdicts[12].alert
    assert _alerts(windows, "zscore", cooldown_s=2 * DAY) == [10, 12, 16]  # exactly the cooldown: allowed


def test_fixed_threshold_fires_on_the_share_itself() -> None:
    negatives = [6, 21, 22, 6, 30]
    verdicts = detect(_windows(negatives), "fixed", threshold=0.5, min_count=10, cooldown_s=0.0, baseline=8)
    assert [v.alert for v in verdicts] == [False, True, False, False, True]  # 21 and 22: one incident
    assert [v.score for v in verdicts] == [0.15, 0.525, 0.55, 0.15, 0.75]
    assert verdicts[1].baseline is None


def test_negative_count_uses_a_poisson_floor() -> None:
    counts = [30, 30, 30, 30, 30, 30, 30, 30, 60]
    negatives = [5] * 8 + [15]  # 5 of 30, then 15 of 60: three times the count
    verdicts = detect(_windows(negatives, counts), "zscore", threshold=None, min_count=10, cooldown_s=0.0,
                      baseline=8, metric="negative_count")
    assert verdicts[-1].baseline == 5.0
    assert verdicts[-1].score == pytest.approx((15 - 5) / math.sqrt(0 + 5))  # no spread: Poisson noise only
    assert verdicts[-1].alert_line("zscore")["metric"] == "negative_count"
    assert verdicts[-1].alert_line("zscore")["value"] == 15.0
