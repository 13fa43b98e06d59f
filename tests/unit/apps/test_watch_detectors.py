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


def _scaled(k: int, n: int) -> float:
    """Anscombe's variance-stabilized share of ``k`` in ``n``."""
    return 2 * math.asin(math.sqrt((k + 3 / 8) / (n + 3 / 4)))


def test_the_zscore_of_a_window_is_its_distance_from_the_trailing_median_in_sigmas() -> None:
    # Eight calm windows alternating 4 and 8 negatives of 40 (shares 0.1 / 0.2), then 20 of 40.
    negatives = [4, 8] * 4 + [20]
    verdicts = detect(_windows(negatives), "zscore", threshold=None, min_count=10, cooldown_s=0.0, baseline=8)
    last = verdicts[-1]
    low, high = _scaled(4, 40), _scaled(8, 40)
    median = (low + high) / 2
    spread = (1.4826 * (high - low) / 2) ** 2  # every window is half the gap from the median: the MAD
    noise = 1 / 40.5  # a share's sampling variance on that scale, the baseline's and this window's
    of_median = math.pi / 2 * spread / 8
    assert spread > noise  # so the baseline varies beyond its sampling noise by the difference
    assert last.score == pytest.approx((_scaled(20, 40) - median) / math.sqrt(spread - noise + noise + of_median))
    assert last.baseline == pytest.approx(0.15)  # reported as a share: the median of 0.1 and 0.2
    assert last.alert and [v.alert for v in verdicts[:-1]] == [False] * 8
    assert last.alert_line("zscore") == {
        "time": "1970-01-10T00:00:00+00:00", "window_start": "1970-01-09T00:00:00+00:00", "topic": "all",
        "detector": "zscore", "metric": "negative_share", "value": 0.5, "baseline": pytest.approx(0.15),
        "score": last.score, "n": 40,
    }


def test_a_missed_bump_in_the_baseline_does_not_hide_the_next_surge() -> None:
    """Two windows at 22.5 % stay under the threshold and so join the baseline; the surge at 35 % after
    them still fires (with the baseline's mean and standard deviation on the share its z was 2.78)."""
    negatives = [4, 4, 4, 4, 9, 4, 9, 4, 14]  # of 40: 10 %, two bumps to 22.5 %, then 35 %
    verdicts = detect(_windows(negatives), "zscore", threshold=None, min_count=10, cooldown_s=0.0, baseline=8)
    assert [v.alert for v in verdicts] == [False] * 8 + [True]
    assert verdicts[4].score is not None and 1.5 < verdicts[4].score < 3.0  # a bump: judged, not anomalous
    assert verdicts[-1].baseline == pytest.approx(0.1)  # the median: the bumps did not move it
    noise = 1 / 40.5  # the MAD is 0: sampling noise only, this window's and the median's
    assert verdicts[-1].score == pytest.approx((_scaled(14, 40) - _scaled(4, 40))
                                               / math.sqrt(noise + math.pi / 2 * noise / 8))


def test_a_binomial_tail_is_not_a_surge() -> None:
    """13 of 40 against a steady 15 % is a 2 % event: on the share itself (mean and spread plus binomial
    noise, no skew) it scored over 3 sigmas; on the stabilized scale it stays under."""
    negatives = [6] * 8 + [13]
    verdicts = detect(_windows(negatives), "zscore", threshold=None, min_count=10, cooldown_s=0.0, baseline=8)
    assert (0.325 - 0.15) / math.sqrt(0.15 * 0.85 / 40) > 3.0
    assert verdicts[-1].score is not None and verdicts[-1].score < 3.0 and not verdicts[-1].alert


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
    # no spread: Poisson noise only (variance 1 for 2 sqrt(count + 3/8)), this window's and the median's
    scaled = 2 * math.sqrt(15 + 3 / 8) - 2 * math.sqrt(5 + 3 / 8)
    assert verdicts[-1].score == pytest.approx(scaled / math.sqrt(1 + math.pi / 2 / 8))
    assert verdicts[-1].alert_line("zscore")["metric"] == "negative_count"
    assert verdicts[-1].alert_line("zscore")["value"] == 15.0
