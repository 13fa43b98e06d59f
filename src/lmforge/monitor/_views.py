"""What the summary endpoint and the dashboard show, computed from the store and the live windows."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmforge.monitor._protocol import MonitorLike
from lmforge.monitor._store import redact_url

__all__ = ["bucket_width", "dashboard_data", "summary"]

LATENCY_ROWS = 100_000
"""Latency percentiles come from the newest this many predictions of the range."""
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def bucket_width(span_s: float, buckets: int = 40) -> float:
    """A round bucket width (seconds) giving about ``buckets`` buckets over ``span_s``."""
    raw = span_s / buckets
    return float(next((s for s in _NICE_STEPS if s >= raw), _NICE_STEPS[-1]))


def _store_state(m: MonitorLike) -> dict[str, Any]:
    return {
        "url": redact_url(m.settings.url),
        "text_policy": m.settings.text_policy,
        "queue_depth": m.queue_depth,
        "queue_size": m.settings.queue_size,
        "written": m.written,
        "dropped": m.dropped,
        "failed": m.failed,
        "invalid": m.invalid,
        "errors_recorded": m.errors,
        "writer_pid": m.writer_pid,
        "writer_restarts": m.writer_restarts,
    }


def _drift_block(m: MonitorLike, model: str, version: str) -> dict[str, Any] | None:
    latest = m.drift_latest(model, version)
    if latest is None:
        return None
    ts, n, results = latest
    return {
        "ts": ts,
        "n": n,
        "drifted": [r.name for r in results if r.drift],
        "results": [r.to_dict() for r in results],
    }


def summary(m: MonitorLike) -> dict[str, Any]:
    """Store state, per-version counts, live metrics, latest drift, alerts."""
    rows = {(r["model"], r["version"]): r for r in (m.store.counts() if m.store is not None else [])}
    for key in m.versions():
        rows.setdefault(
            key,
            {
                "model": key[0],
                "version": key[1],
                "predictions": 0,
                "first_ts": None,
                "last_ts": None,
                "feedback": 0,
                "prompt_tokens": None,
                "completion_tokens": None,
                "tokens_per_s": None,
            },
        )
    models = []
    for (model, version), row in sorted(rows.items()):
        drift = _drift_block(m, model, version)
        estimate = None
        if drift:
            estimate = next(
                (r["statistic"] for r in drift["results"] if r["name"] == "accuracy-estimate"), None
            )
        models.append(
            {
                **row,
                "live": {str(w): m.cached_live_metrics(model, version, w) for w in m.settings.windows},
                "recent": m.window_stats(model, version, m.settings.windows[0]),
                "estimated_accuracy": estimate,
                "drift": drift,
            }
        )
    reference = None
    if m.reference is not None:
        reference = {
            "run": m.reference.meta.get("run"),
            "detectors": sorted(m.reference.detectors),
            "skipped": m.reference.skipped,
        }
    return {
        "generated_at": time.time(),
        "labels": m.labels,
        "store": _store_state(m),
        "models": models,
        "reference": reference,
        "alerts": {
            "rules": [r.name for r in m.settings.alerts],
            "active": m.active_alerts(),
            "recent": [_alert_row(a) for a in (m.store.recent_alerts(20) if m.store else [])],
            "webhooks": {"delivered": m.notifier.delivered, "failed": m.notifier.failed},
        },
    }


def _alert_row(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] for k in ("ts", "rule", "metric", "status", "value", "threshold", "model", "version")}


@dataclass(frozen=True)
class _Buckets:
    """``n`` time buckets of ``width`` seconds from ``start``."""

    start: float
    width: float
    n: int

    def of(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """The bucket of each row's timestamp (its first field); times out of range go to the edges."""
        if not rows:
            return np.zeros(0, dtype=np.int64)
        ts = np.array([r[0] for r in rows], dtype=np.float64)
        return np.clip(((ts - self.start) // self.width).astype(np.int64), 0, self.n - 1)


def dashboard_data(
    m: MonitorLike, minutes: float = 60.0, model: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """Time series (fixed buckets over the last ``minutes``) and the headline numbers of the dashboard."""
    now = time.time()
    span = max(float(minutes), 1.0) * 60.0
    width = bucket_width(span)
    n = max(int(np.ceil(span / width)), 1)
    buckets = _Buckets(now - n * width, width, n)
    start = buckets.start
    # Counts and label mix in SQL (exact at any volume); latency percentiles from the newest rows.
    count, per_label = _label_counts(m.store.bucket_counts(start, width, n, model, version), n)
    preds = m.store.predictions_since(start, model, version, limit=LATENCY_ROWS)
    lat = np.array([p[1] for p in preds], dtype=np.float64)
    p50, p95 = _latency_percentiles(buckets.of(preds), lat, n)
    errs = m.store.errors_since(start, model, version)
    err_count = np.bincount(buckets.of(errs), minlength=n)
    total = count + err_count
    mix_labels = sorted(set(per_label) | set(m.labels))
    mix = [
        (label, [float(h / c) if c else 0.0 for h, c in zip(per_label[label], count, strict=True)])
        for label in mix_labels
    ]
    fb = m.store.feedback_since(start, model, version)
    timeline, estimated = _drift_series(m.store.drift_since(start, model, version), buckets)
    total_preds = int(count.sum())
    overall_mix = (
        {label: float(per_label[label].sum()) / total_preds for label in mix_labels} if total_preds else {}
    )
    return {
        "now": now,
        "start": start,
        "minutes": minutes,
        "bucket_s": width,
        "model": model,
        "version": version,
        "x": [start + (i + 0.5) * width for i in range(n)],
        "throughput": [float(c / width) for c in count],
        "latency_p50": p50,
        "latency_p95": p95,
        "error_rate": [float(e / t) if t else None for e, t in zip(err_count, total, strict=True)],
        "label_mix": mix,
        "accuracy": _accuracy_series(fb, buckets),
        "estimated_accuracy": estimated,
        "drift_timeline": timeline,
        "headline": {
            "predictions": total_preds,
            "errors": len(errs),
            "feedback": len(fb),
            "throughput_per_s": total_preds / span,
            "latency_p95_ms": float(np.percentile(lat, 95)) if preds else None,
            "error_rate": len(errs) / (len(errs) + total_preds) if (errs or total_preds) else None,
            "accuracy": float(np.mean([f[1] for f in fb])) if fb else None,
            "label_mix": overall_mix,
        },
        "summary": summary(m),
    }


def _label_counts(
    counted: Sequence[tuple[int, str, int]], n: int
) -> tuple[np.ndarray, defaultdict[str, np.ndarray]]:
    """Predictions per bucket, and per label per bucket (zeros for a label never seen)."""
    count = np.zeros(n, dtype=np.int64)
    per_label: defaultdict[str, np.ndarray] = defaultdict(lambda: np.zeros(n, dtype=np.int64))
    for b, label, c in counted:
        count[b] += c
        per_label[label][b] += c
    return count, per_label


def _latency_percentiles(
    idx: np.ndarray, lat: np.ndarray, n: int
) -> tuple[list[float | None], list[float | None]]:
    """p50 and p95 latency per bucket (None where a bucket has no prediction)."""
    p50: list[float | None] = [None] * n
    p95: list[float | None] = [None] * n
    for b in np.unique(idx):
        sel = lat[idx == b]
        p50[b], p95[b] = float(np.percentile(sel, 50)), float(np.percentile(sel, 95))
    return p50, p95


def _accuracy_series(fb: Sequence[Sequence[Any]], buckets: _Buckets) -> list[float | None]:
    """Share of correct feedback per bucket (None where a bucket got none)."""
    fb_idx = buckets.of(fb)
    fb_n = np.bincount(fb_idx, minlength=buckets.n)
    fb_ok = (
        np.bincount(fb_idx, weights=np.array([float(f[1]) for f in fb]), minlength=buckets.n)
        if fb
        else np.zeros(buckets.n)
    )
    return [float(o / k) if k else None for o, k in zip(fb_ok, fb_n, strict=True)]


def _drift_series(
    drift_rows: Sequence[Sequence[Any]], buckets: _Buckets
) -> tuple[list[tuple[str, list[tuple[float, bool | None]]]], list[float | None]]:
    """Each detector's verdicts over time, and the accuracy estimate per bucket (the last one in it)."""
    timeline: dict[str, list[tuple[float, bool | None]]] = defaultdict(list)
    estimated: list[tuple[float, float]] = []
    for d_ts, _m, _v, detector, statistic, _thr, drift in drift_rows:
        timeline[detector].append((d_ts, None if drift is None else bool(drift)))
        if detector == "accuracy-estimate" and statistic is not None:
            estimated.append((d_ts, float(statistic)))
    est_series: list[float | None] = [None] * buckets.n
    for b, (_, v) in zip(buckets.of(estimated), estimated, strict=True):
        est_series[b] = v
    return sorted(timeline.items()), est_series
