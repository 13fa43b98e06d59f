"""Thresholds calibrated to a false-alarm budget on a calm stream, and long calm streams drawn with replacement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.unit.apps.test_watch_replay import SENTIMENT

from lmforge.apps.watch import (
    Scorer,
    WindowStats,
    calibrate_thresholds,
    calibrate_watch,
    calm_stream,
    detect_all,
    window_start,
)
from lmforge.cli.__main__ import main
from lmforge.config import WatchConfig
from lmforge.errors import ConfigError, DataError

HOUR = 3600.0
DETECTORS = ("cusum", "ewma", "fixed", "page-hinkley", "zscore")


def _cfg(**kw: object) -> WatchConfig:
    base: dict[str, object] = {"sentiment_run": "-", "negative_label": "Bearish", "window": "1h", "min_count": 10,
                               "baseline": 24, "actions": []}
    return WatchConfig(**{**base, **kw})  # type: ignore[arg-type]


def _calm(seed: int, size: int = 400, p: float = 0.1) -> dict[str, list[WindowStats]]:
    rng = np.random.default_rng(seed)
    ns = np.maximum(1, rng.poisson(30, size=size))
    return {"all": [WindowStats(start=i * HOUR, end=(i + 1) * HOUR, topic="all", n=int(n), negative=int(k))
                    for i, (n, k) in enumerate(zip(ns, rng.binomial(ns, p), strict=True))]}


def _alerts(windows: dict[str, list[WindowStats]], cfg: WatchConfig, name: str, threshold: float) -> int:
    return sum(v.alert for vs in detect_all(windows, cfg, name, threshold).values() for v in vs)


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05])
def test_each_threshold_is_the_smallest_on_the_grid_within_the_rate(rate: float) -> None:
    windows, cfg = _calm(0), _cfg()
    found = calibrate_thresholds(windows, cfg, DETECTORS, rate)
    assert sorted(found) == sorted(DETECTORS)
    for name, c in found.items():
        step = 0.005 if name == "fixed" else 0.05
        # the baseline's warm-up (half of 24 windows) is not judged; the fixed rule has none
        assert c["windows_judged"] == (400 if name == "fixed" else 400 - 12)
        assert c["alerts"] == _alerts(windows, cfg, name, c["threshold"]) <= rate * c["windows_judged"]
        assert c["false_alarm_rate"] == c["alerts"] / c["windows_judged"]
        assert _alerts(windows, cfg, name, round(c["threshold"] - step, 6)) > rate * c["windows_judged"], name
    # a share threshold for the fixed rule, z-like ones for the others; a looser budget never raises them
    assert 0.1 < found["fixed"]["threshold"] < 1.0
    assert found["zscore"]["default_threshold"] == 3.0 and found["cusum"]["default_threshold"] == 4.0


def test_a_looser_budget_gives_lower_thresholds() -> None:
    windows, cfg = _calm(1), _cfg()
    strict = calibrate_thresholds(windows, cfg, DETECTORS, 0.002)
    loose = calibrate_thresholds(windows, cfg, DETECTORS, 0.05)
    for name in DETECTORS:
        assert loose[name]["threshold"] < strict[name]["threshold"], name


def test_a_count_metric_calibrates_the_fixed_rule_in_whole_texts() -> None:
    found = calibrate_thresholds(_calm(2), _cfg(metric="negative_count"), ["fixed"], 0.01)
    assert found["fixed"]["threshold"] == int(found["fixed"]["threshold"]) >= 4


def test_bad_rates_and_streams_with_nothing_to_judge_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"false-alarm rate must be in \[0, 1\)"):
        calibrate_thresholds(_calm(0), _cfg(), ["zscore"], 1.0)
    small = {"all": [WindowStats(start=i * HOUR, end=(i + 1) * HOUR, topic="all", n=5, negative=1) for i in range(50)]}
    with pytest.raises(DataError, match=r"No window of the calm stream has watch.min_count \(10\) texts"):
        calibrate_thresholds(small, _cfg(), ["zscore"], 0.01)


def test_a_calm_stream_of_more_windows_than_texts_draws_with_replacement() -> None:
    texts = [f"text {i}" for i in range(20)]
    rows = calm_stream(texts, start=0.0, window_s=HOUR, per_window=30, seed=4, windows=50)
    assert rows == calm_stream(texts, start=0.0, window_s=HOUR, per_window=30, seed=4, windows=50)
    assert {window_start(r.time, HOUR) for r in rows} == {i * HOUR for i in range(50)}
    assert {r.text for r in rows} == set(texts) and 1000 < len(rows) < 2000  # 50 windows of ~30, each text reused
    assert [r.time for r in rows] == sorted(r.time for r in rows)
    with pytest.raises(DataError, match="at least 1 window"):
        calm_stream(texts, start=0.0, window_s=HOUR, per_window=30, windows=0)
    with pytest.raises(DataError, match="no texts"):
        calm_stream([], start=0.0, window_s=HOUR, per_window=30)


def _calm_file(path: Path, hours: int = 60) -> Path:
    """Hourly windows of 20 texts, 1-4 of them negative ("slump"), seeded."""
    rng = np.random.default_rng(7)
    rows = [{"time": f"2024-03-{1 + h // 24:02d}T{h % 24:02d}:{m * 3:02d}:00Z",
             "text": "gold slump" if m < k else "gold steady"}
            for h in range(hours) for k in [int(rng.integers(1, 5))] for m in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_calibrate_watch_scores_the_stream_and_reports_every_detector(tmp_path: Path) -> None:
    cfg = _cfg(min_count=5, baseline=8)
    result = calibrate_watch(cfg, _calm_file(tmp_path / "calm.jsonl"), rate=0.0, scorer=Scorer(SENTIMENT, "Bearish"))
    assert {k: result[k] for k in ("texts", "window", "metric", "min_count", "baseline", "rate")} == {
        "texts": 1200, "window": "1h", "metric": "negative_share", "min_count": 5, "baseline": 8, "rate": 0.0}
    assert sorted(result["detectors"]) == sorted(DETECTORS)
    for name, c in result["detectors"].items():
        assert c["alerts"] == 0 and c["windows_judged"] == (60 if name == "fixed" else 60 - 4), name
    # the calm stream's negative share tops out at 4 of 20: the fixed rule's threshold is just above it
    assert result["detectors"]["fixed"]["threshold"] == 0.2


def test_the_cli_refuses_a_rate_outside_0_1_before_loading_anything(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "watch.yaml"
    spec.write_text(yaml.safe_dump({"watch": {"sentiment_run": str(tmp_path / "no-run"), "negative_label": "Bearish",
                                              "window": "1h", "actions": []}}), encoding="utf-8")
    code = main(["watch", "calibrate", str(spec), "--input", str(_calm_file(tmp_path / "c.jsonl")), "--rate", "1.5"])
    assert code == 2
    assert capsys.readouterr().err == ("error: The false-alarm rate must be in [0, 1) (alerts per judged window), "
                                       "got 1.5.\n")


def test_each_planted_surge_is_labelled_with_the_texts_it_added_to_its_window() -> None:
    from collections import Counter

    from lmforge.apps.watch import inject_surges, parse_time

    calm = calm_stream([f"calm {i}" for i in range(40)], start=0.0, window_s=HOUR, per_window=30, seed=1, windows=120)
    rows, incidents = inject_surges(calm, ["bad news"], surges=5, seed=2, window_s=HOUR, warmup=26, gap=12,
                                    min_added=10)
    before = Counter(window_start(r.time, HOUR) for r in calm)
    after = Counter(window_start(r.time, HOUR) for r in rows)
    planted = Counter(window_start(r.time, HOUR) for r in rows if r.text == "bad news")
    assert len(incidents) == 5 and sum(planted.values()) == len(rows) - len(calm)
    for incident in incidents:
        start = parse_time(incident["start"])
        assert incident["window_texts"] == before[start] and incident["added"] == after[start] - before[start]
        assert incident["added"] == planted[start] >= 10
        assert max(10, round(0.3 * before[start])) <= incident["added"] <= max(10, before[start])
