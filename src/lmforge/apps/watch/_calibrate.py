"""Thresholds for a false-alarm budget: per detector, the smallest one a calm stream stays under.

A threshold is in its detector's own units (z for ``zscore`` and ``ewma``, h for ``cusum``,
lambda for ``page-hinkley``, the metric itself for ``fixed``), so 3 means something different to
each, and none of them says how often a calm stream alerts. Calibration answers that on the user's
own history: given the windows of a stream known to hold no incident, each detector gets the
smallest threshold on a grid (steps of 0.05 for the statistical detectors; 0.005 of a share or a
mean score, or 1 text of a count, for ``fixed``) at which its alerts per judged window are at most
``rate``. Detectors are then compared at the same false-alarm rate, which is how a detector's
recall means anything (a lower threshold always finds more).

Each candidate threshold runs the detector afresh (an alarm keeps its window out of the baseline,
so the scores depend on the threshold). The scan stops at the largest score the calm stream
reaches with no alarm at all: above it the run is alarm-free, so a threshold always exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.apps.watch._aggregate import WindowStats, aggregate
from lmforge.apps.watch._registry import SPIKE_DETECTORS, get_spike_detector
from lmforge.apps.watch._replay import detect_all
from lmforge.apps.watch._score import Scorer
from lmforge.apps.watch._sources import read_stream
from lmforge.config import Spec, WatchConfig
from lmforge.errors import ConfigError, DataError

__all__ = ["calibrate_thresholds", "calibrate_watch"]


def _step(detector: str, metric: str) -> float:
    if detector != "fixed":
        return 0.05
    return 1.0 if metric == "negative_count" else 0.005


def _run(windows: dict[str, list[WindowStats]], cfg: WatchConfig, detector: str,
         threshold: float) -> tuple[int, int, float]:
    """(alerts, judged windows, largest score) of ``detector`` at ``threshold`` over every topic."""
    verdicts = [v for vs in detect_all(windows, cfg, detector, threshold).values() for v in vs]
    scores = [v.score for v in verdicts if v.score is not None]
    return sum(v.alert for v in verdicts), len(scores), max(scores, default=-math.inf)


def calibrate_thresholds(windows: dict[str, list[WindowStats]], cfg: WatchConfig, detectors: Sequence[str],
                         rate: float) -> dict[str, dict[str, Any]]:
    """Per detector, the smallest grid threshold whose alerts on the calm ``windows`` are at most ``rate``
    of the windows it judged; with the alerts, the windows judged and the detector's default.

    Raises:
        ConfigError: ``rate`` outside [0, 1), or an unknown detector.
        DataError: no window has ``watch.min_count`` texts (nothing to judge).
    """
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"The false-alarm rate must be in [0, 1) (alerts per judged window), got {rate}.")
    out: dict[str, dict[str, Any]] = {}
    for name in detectors:
        default = float(get_spike_detector(name).threshold)  # type: ignore[attr-defined]
        _, judged, top = _run(windows, cfg, name, math.inf)
        if judged == 0:
            raise DataError(f"No window of the calm stream has watch.min_count ({cfg.min_count}) texts after the "
                            f"detectors' warm-up ({cfg.baseline} windows), so there is nothing to calibrate on. Give "
                            "a longer stream, a longer watch.window, or a lower watch.min_count.")
        step = _step(name, cfg.metric)
        found = None
        for k in range(1, math.floor(max(top, 0.0) / step) + 2):
            threshold = round(k * step, 6)
            alerts, judged, _ = _run(windows, cfg, name, threshold)
            if alerts <= rate * judged:
                found = (threshold, alerts, judged)
                break
        threshold, alerts, judged = found if found is not None else (round(top + step, 6), 0, judged)
        out[name] = {"threshold": threshold, "alerts": alerts, "windows_judged": judged,
                     "false_alarm_rate": alerts / judged, "default_threshold": default}
    return out


def calibrate_watch(spec: Spec | WatchConfig, input_path: str | Path, *, rate: float,
                    detectors: Sequence[str] | None = None, scorer: Scorer | None = None,
                    public_key: str | Path | None = None, allow_unsigned: bool = False) -> dict[str, Any]:
    """``lmforge watch calibrate``: score a calm stream and calibrate every detector (or ``detectors``)
    to at most ``rate`` alerts per judged window (:func:`calibrate_thresholds`).

    Raises:
        ConfigError, DataError: as :func:`calibrate_thresholds`, and as reading and scoring the stream do.
    """
    cfg = spec.watch if isinstance(spec, Spec) else spec
    names = list(detectors or sorted(SPIKE_DETECTORS))
    for name in names:
        get_spike_detector(name)
    if not 0.0 <= rate < 1.0:  # before the stream is scored
        raise ConfigError(f"The false-alarm rate must be in [0, 1) (alerts per judged window), got {rate}.")
    stream = read_stream(input_path, time_field=cfg.time_field, text_field=cfg.text_field,
                         max_bad_share=cfg.max_bad_share)
    scorer = scorer or Scorer.from_config(cfg, public_key=public_key, allow_unsigned=allow_unsigned)
    scored = scorer.score([r.text for r in stream.rows])
    windows = aggregate([r.time for r in stream.rows], list(scored.negative), list(scored.negative_proba),
                        scored.topics, cfg.window_s)
    return {"stream": stream.source, "texts": len(stream.rows), "window": cfg.window, "metric": cfg.metric,
            "min_count": cfg.min_count, "baseline": cfg.baseline, "rate": rate,
            "detectors": calibrate_thresholds(windows, cfg, names, rate)}
