"""The injected-surge part of ``bench/sentiment_watch.py``: detectors compared at one false-alarm rate.

A calm stream of held-out finance tweets (``CALM_WINDOWS`` hourly windows of about 30 texts, drawn
with replacement from the valid split without half of its Bearish tweets), with ``surges`` seeded
surges of the other Bearish half planted by ``lmforge.apps.watch.inject_surges``: each adds 0.3-1.0
times its window's texts, at least ``GAP`` windows (half a day) from the next, so an incident is
rare (20 in 480 windows) and the trailing baseline (``BASELINE`` windows, a day) holds at most two.

Each detector is judged twice:

- at its default threshold (the fixed rule at a negative share of 0.25, about three times the calm
  stream's Bearish share);
- at the threshold ``lmforge.apps.watch.calibrate_thresholds`` gives it for at most ``RATE``
  alerts per judged window on calm streams of their own seeds (no surges; the test streams are
  never looked at): every detector, the fixed rule included, at the same false-alarm rate.

Recall is also given per surge size (texts added / the window's own texts), so the size below
which a detector stops finding surges is visible. Each distinct text is scored once.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

CALM_WINDOWS = 480
PER_WINDOW = 30
GAP = 12
BASELINE = 24
RATE = 0.005
"""One false alarm per 200 hourly windows (about 8 days) on a calm stream."""
SIZE_BINS = ((0.3, 0.5), (0.5, 0.75), (0.75, 1.01))
START = "2024-01-01"


def _cfg() -> Any:
    from lmforge.config import WatchConfig

    return WatchConfig(sentiment_run="-", negative_label="Bearish", window="1h", min_count=10, baseline=BASELINE,
                       actions=[])


def _texts(twitter: Path) -> tuple[list[str], list[str]]:
    """(calm texts, pool of Bearish texts to inject): the valid split, its Bearish tweets halved, seeded."""
    with (twitter / "sentiment" / "sent_valid.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    bearish = [r["text"] for r in rows if r["label"] == "0"]
    np.random.default_rng(0).shuffle(bearish)
    pool, calm_bearish = bearish[: len(bearish) // 2], bearish[len(bearish) // 2:]
    return [r["text"] for r in rows if r["label"] != "0"] + calm_bearish, pool


def _windows(rows: list[Any], scores: dict[str, tuple[bool, float]], cfg: Any) -> dict[str, list[Any]]:
    from lmforge.apps.watch import ALL_TOPICS, aggregate

    return aggregate([r.time for r in rows], [scores[r.text][0] for r in rows], [scores[r.text][1] for r in rows],
                     [ALL_TOPICS] * len(rows), cfg.window_s)


def _detected(alerts: list[dict[str, Any]], incident: dict[str, Any]) -> bool:
    from lmforge.apps.watch import parse_time

    return any(parse_time(a["window_start"]) < incident["end"] and parse_time(a["time"]) > incident["start"]  # type: ignore[operator]
               for a in alerts)


def _totals(per_seed: list[dict[str, Any]], det: str) -> dict[str, Any]:
    alerts = sum(s[det]["alerts"] for s in per_seed)
    true = sum(s[det]["true_alerts"] for s in per_seed)
    n = sum(s[det]["incidents"] for s in per_seed)
    within = sum(s[det]["within_one_window"] * s[det]["incidents"] for s in per_seed)
    return {"alerts": alerts, "false_alerts": alerts - true, "incidents": n,
            "precision": true / alerts if alerts else None,
            "recall": sum(s[det]["detected"] for s in per_seed) / n, "within_one_window": within / n}


def injected(sentiment: Any, twitter: Path, seeds: list[int], calibration_seeds: list[int], surges: int,
             detectors: tuple[str, ...], fixed_share: float, log: Any) -> dict[str, Any]:
    """Every detector at its default threshold (the fixed rule at ``fixed_share``) and at its calibrated
    one, over ``seeds`` (see the module docstring)."""
    from lmforge.apps.watch import (
        Scorer,
        alert_lines,
        calibrate_thresholds,
        calm_stream,
        detect_all,
        inject_surges,
        score_alerts,
    )
    from lmforge.apps.watch import parse_time as ts

    cfg = _cfg()
    calm_texts, pool = _texts(twitter)
    unique = sorted(set(calm_texts) | set(pool))
    scored = Scorer(sentiment, "Bearish").score(unique)
    scores = {t: (bool(neg), float(p)) for t, neg, p in zip(unique, scored.negative, scored.negative_proba,
                                                           strict=True)}

    def calm(seed: int) -> list[Any]:
        return calm_stream(calm_texts, start=ts(START), window_s=cfg.window_s, per_window=PER_WINDOW,  # type: ignore[arg-type]
                           seed=seed, windows=CALM_WINDOWS)

    calibration_windows: dict[str, list[Any]] = {}
    for k, seed in enumerate(calibration_seeds):  # calm streams side by side: one long series per detector
        for topic, ws in _windows(calm(seed), scores, cfg).items():
            shift = k * (CALM_WINDOWS + BASELINE) * cfg.window_s  # each stream after the other, a day apart
            calibration_windows.setdefault(topic, []).extend(
                type(w)(start=w.start + shift, end=w.end + shift, topic=w.topic, n=w.n, negative=w.negative,
                        score_sum=w.score_sum) for w in ws)
    calibrated = calibrate_thresholds(calibration_windows, cfg, detectors, RATE)
    log("calibrated thresholds at " + f"{RATE:g} false alarms per window: "
        + ", ".join(f"{d} {c['threshold']:g}" for d, c in calibrated.items()))

    per_seed: dict[str, list[dict[str, Any]]] = {"default": [], "calibrated": []}
    by_size: dict[str, dict[str, list[int]]] = {d: {f"{lo:g}-{min(hi, 1.0):g}": [0, 0] for lo, hi in SIZE_BINS}
                                                for d in detectors}
    for seed in seeds:
        rows, incidents = inject_surges(calm(seed), pool, surges=surges, seed=seed, window_s=cfg.window_s,
                                        warmup=BASELINE + 2, gap=GAP, min_added=cfg.min_count)
        labelled = [{**i, "start": ts(i["start"]), "end": ts(i["end"])} for i in incidents]
        windows = _windows(rows, scores, cfg)
        for mode in per_seed:
            results = {}
            for det in detectors:
                limit = calibrated[det]["threshold"] if mode == "calibrated" else fixed_share if det == "fixed" \
                    else None
                alerts = alert_lines(detect_all(windows, cfg, det, limit), det)
                results[det] = score_alerts(alerts, labelled, cfg.window_s)
                if mode == "calibrated":
                    for incident in labelled:
                        size = incident["added"] / incident["window_texts"]
                        key = next(f"{lo:g}-{min(hi, 1.0):g}" for lo, hi in SIZE_BINS if lo <= size < hi)
                        by_size[det][key][0] += _detected(alerts, incident)
                        by_size[det][key][1] += 1
            per_seed[mode].append(results)
        log(f"injected seed {seed}: " + ", ".join(
            f"{d} P={r['precision']} R={r['recall']}" for d, r in per_seed["calibrated"][-1].items()) + " (calibrated)")
    return {"seeds": seeds, "calibration_seeds": calibration_seeds, "surges_per_seed": surges,
            "calm_windows": CALM_WINDOWS, "per_window": PER_WINDOW, "gap_windows": GAP, "baseline_windows": BASELINE,
            "false_alarm_rate": RATE, "calm_texts": len(calm_texts), "pool": len(pool),
            "calibrated_thresholds": calibrated,
            "totals": {mode: {d: _totals(runs, d) for d in detectors} for mode, runs in per_seed.items()},
            "recall_by_size": {d: {k: (hit / n if n else None, n) for k, (hit, n) in bins.items()}
                               for d, bins in by_size.items()},
            "per_seed": per_seed}
