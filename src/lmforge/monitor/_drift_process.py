"""Drift checks in the store-writer process: the recent window of each version against the reference.

An embedding check costs CPU-seconds of torch; in the serving process it took those from the
request path (``bench/serve_load.py``: with drift checks on, ``--monitor`` cost far more than with
them off). Here they run where the predictions are stored: after a batch is stored, a version with
``drift_every`` new predictions since its last check (at most one per ``drift_min_interval_s``) is
scored, the results go to the ``drift`` table and back to the server as ``{"drift": [model,
version, ts, n, [result...]]}`` before the batch's acknowledgement, so a flush covers them. torch
loads here at the first embedding check, never at start. The reference comes from the server as
its JSON (``ReferenceState.to_json``), in the config and whenever the server's reference changes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from lmforge.monitor._channel import encode, write_frame
from lmforge.monitor._drift import DriftData, DriftResult
from lmforge.monitor._embed import get_encoder
from lmforge.monitor._reference import ReferenceState

__all__ = ["ProcessDrift"]

log = logging.getLogger("lmforge.monitor._monitor")


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _result(r: DriftResult) -> dict[str, Any]:
    out = r.to_dict()
    out.update(statistic=_finite(r.statistic), p_value=_finite(r.p_value), threshold=_finite(r.threshold))
    try:
        encode({"detail": out["detail"]})
    except (TypeError, ValueError):  # not strict JSON (a NaN inside): the table keeps it, the frame not
        out["detail"] = {}
    return out


def _load_encoder(model: str, max_length: int) -> None:
    started = time.monotonic()
    try:
        get_encoder(model, max_length).encode([])  # loads, embeds nothing
    except Exception as exc:  # the first check loads it (or reports why it cannot)
        log.warning("monitor writer: the embedding check's encoder could not be loaded at start (%s)", exc)
        return
    log.info("monitor writer: embedding encoder %s loaded at start in %.1f s", model, time.monotonic() - started)


class ProcessDrift:
    """The drift windows and checks of the writer process."""

    def __init__(self, config: dict[str, Any], store: Any, out: int) -> None:
        self.every = int(config["drift_every"])
        self.min_interval = float(config["drift_min_interval_s"])
        self.window = int(config["drift_window"])
        self.labels = [str(x) for x in config.get("labels", [])]
        self.store, self.out = store, out
        self.reference: ReferenceState | None = None
        self.recent: dict[tuple[str, str], deque[tuple[str, dict[str, float]]]] = {}
        self.since: dict[tuple[str, str], int] = {}
        self.started: dict[tuple[str, str], float] = {}
        self.set_reference(config.get("reference"))

    def set_reference(self, data: dict[str, Any] | None) -> None:
        """The server's reference (None: no checks); a bad one is logged and means no checks."""
        try:
            self.reference = None if data is None else ReferenceState.from_json(data)
        except Exception as exc:
            self.reference = None
            log.error("monitor writer: the drift reference could not be read (%s); no drift checks", exc)

    def preload(self, encoder: list[Any] | None) -> threading.Thread | None:
        """Load the embedding check's encoder (``[model, max_length]``) in a thread, now.

        Its first load imports torch and reads the model (CPU-seconds, once): done here, right after
        the writer said it is ready, it overlaps the server's own start (the reference's loading)
        instead of coming out of the first seconds of serving at the first check. The check uses the
        same process-wide encoder, and waits on its lock if the load is not done yet.
        """
        if not encoder:
            return None
        thread = threading.Thread(
            target=_load_encoder, args=(str(encoder[0]), int(encoder[1])), name="lmforge-monitor-preload", daemon=True
        )
        thread.start()
        return thread

    def add(self, rows: list[list[Any]]) -> None:
        """Stored predictions, as channel rows (the text in clear: memory only)."""
        for p in rows:
            key = (str(p[2]), str(p[3]))
            window = self.recent.get(key)
            if window is None:
                window = self.recent[key] = deque(maxlen=self.window)
            window.append((str(p[4]), p[7]))
            self.since[key] = self.since.get(key, 0) + 1

    def run_due(self, now: float, wall: float) -> None:
        """Check every version that is due (``now``: monotonic seconds; ``wall``: Unix time)."""
        if self.reference is None:
            return
        for key, n in list(self.since.items()):
            if n >= self.every and now - self.started.get(key, -math.inf) >= self.min_interval:
                self.started[key], self.since[key] = now, 0
                try:
                    self.check(*key, wall)
                except Exception:
                    log.exception("monitor: drift check of %s failed", key)

    def check(self, model: str, version: str, ts: float) -> None:
        if self.reference is None:
            return
        items = list(self.recent.get((model, version), ()))
        if not items:
            return
        proba = np.array([[scores.get(label, 0.0) for label in self.labels] for _, scores in items], dtype=np.float64)
        results = self.reference.score(DriftData([t for t, _ in items], proba, list(self.labels)))
        self.store.insert(
            "drift",
            [
                {"ts": ts, "model": model, "version": version, "detector": r.name, "statistic": _finite(r.statistic),
                 "p_value": _finite(r.p_value), "threshold": _finite(r.threshold), "drift": r.drift, "n": len(items),
                 "reason": r.reason, "detail": r.detail}
                for r in results
            ],
        )
        flagged = [r.name for r in results if r.drift]
        if flagged:
            log.info("drift in %s %s over %d predictions: %s", model, version, len(items), ", ".join(flagged))
        write_frame(self.out, {"drift": [model, version, ts, len(items), [_result(r) for r in results]]})
