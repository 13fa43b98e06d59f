"""The drift runner: the reference, on-demand checks and the latest results of each version.

The checks due every ``drift_every`` predictions of a version (at most one per
``drift_min_interval_s``) run in the store-writer process (``_drift_process``), which sends their
results here (:meth:`DriftRunner.checked_elsewhere`); :meth:`DriftRunner.check` scores a version's
window in this process when asked. The reference is fitted on the reference run once and cached as
JSON next to the store, so a restart loads it instead. With ``verify_reference`` (a server's
setting) the reference run is verified first, like every run a server loads, and a file that
changed between verification and fitting (or hashing it for the cache key) is refused.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.guard import trust_run
from lmforge.monitor._drift import DriftData, DriftResult
from lmforge.monitor._live import VersionWindow, Windows
from lmforge.monitor._reference import ReferenceState, fit_reference, reference_fingerprint
from lmforge.monitor._settings import MonitorSettings
from lmforge.rundir import RunDir

__all__ = ["DriftRunner"]

log = logging.getLogger("lmforge.monitor._monitor")  # the Monitor's name, as its writer and alerts use

_STOP = object()


class DriftRunner:
    """Drift checks of the live windows against the reference, on a background thread.

    Args:
        settings: the reference run and how often to check.
        labels: the model's labels (drift reads scores in this order).
        windows: the live windows a check reads.
        on_checked: called after each check (alert rules read its results).
    """

    def __init__(
        self,
        settings: MonitorSettings,
        labels: Sequence[str],
        windows: Windows,
        on_checked: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.labels = list(labels)
        self.reference: Any = None
        self.store: Any = None
        self.latest: dict[tuple[str, str], tuple[float, int, list[DriftResult]]] = {}
        self._windows = windows
        self._on_checked = on_checked
        self._queue: queue.Queue[Any] = queue.Queue()
        self._started: dict[tuple[str, str], float] = {}
        self._thread: threading.Thread | None = None

    # -- reference -------------------------------------------------------------------------
    def load_reference(self, store: Any, run: str) -> ReferenceState:
        """The reference of ``run`` (the ``reference_run`` setting): from its cache file, else fitted and cached."""
        s = self.settings
        RunDir(run).require("data/train.jsonl", hint="monitor reference_run must be a trained run.")
        check = (
            trust_run(run, s.reference_public_key, allow_unsigned=s.reference_allow_unsigned)
            if s.verify_reference else None
        )
        fingerprint = reference_fingerprint(run, s.detectors, s.detector_options, s.reference_size)
        if check is not None:
            check.check_unchanged()  # the cache key hashes what was verified
        path = self._reference_path(store, fingerprint)
        if path.is_file():
            try:
                state = ReferenceState.load(path)
                if state.meta.get("fingerprint") == fingerprint:
                    log.info("drift reference loaded from %s", path)
                    return state
            except Exception as exc:  # a damaged cache is rebuilt, not fatal
                log.warning("drift reference cache %s unreadable (%s); fitting again", path, exc)
        state = fit_reference(run, s.detectors, s.detector_options, s.reference_size, verified=check)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            state.save(path)
        except OSError as exc:
            log.warning("could not cache the drift reference at %s: %s", path, exc)
        return state

    def _reference_path(self, store: Any, fingerprint: str) -> Path:
        if self.settings.reference_state:
            return Path(self.settings.reference_state)
        db = getattr(store.engine.url, "database", None) or ""
        base = (
            Path(db).expanduser().parent
            if store.engine.dialect.name == "sqlite" and db and db != ":memory:"
            else Path(".lmforge")
        )
        return base / f"reference-{fingerprint[:16]}.json"

    # -- thread ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, store: Any) -> None:
        """Start the drift thread; checks are stored in ``store``."""
        self.store = store
        self._thread = threading.Thread(target=self._loop, name="lmforge-monitor-drift", daemon=True)
        self._thread.start()

    def schedule(self, model: str, version: str, window: VersionWindow) -> None:
        """Queue a check of a version whose window grew by ``drift_every`` since its last one (writer thread)."""
        if self.reference is not None and window.since_drift >= self.settings.drift_every:
            key = (model, version)
            now = time.monotonic()
            if now - self._started.get(key, -math.inf) >= self.settings.drift_min_interval_s:
                self._started[key] = now
                window.since_drift = 0
                self._queue.put(key)

    def flush(self, timeout: float, deadline: float) -> bool:
        """Wait until every check queued before this call ran; False (logged) on a timeout."""
        checked = threading.Event()
        self._queue.put(checked)
        if not checked.wait(max(deadline - time.monotonic(), 0.0)):
            log.warning("monitor flush timed out after %.1f s waiting for drift checks", timeout)
            return False
        return True

    def stop(self) -> None:
        """Stop the thread after the checks already queued (waits up to 60 s)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(60)

    def _loop(self) -> None:
        while True:
            key = self._queue.get()
            if key is _STOP:
                return
            if isinstance(key, threading.Event):
                key.set()
                continue
            try:
                self.check(*key)
            except Exception:
                log.exception("monitor: drift check of %s failed", key)

    # -- checks ----------------------------------------------------------------------------
    def checked_elsewhere(self, model: str, version: str, ts: float, n: int, results: list[dict[str, Any]]) -> None:
        """A check the store-writer process ran (and stored): its results, for the views and alerts."""
        self.latest[(model, version)] = (ts, n, [DriftResult(**r) for r in results])
        self._on_checked()

    def check(self, model: str, version: str) -> list[DriftResult]:
        """Score the recent window of a version against the reference now, and store the results."""
        if self.reference is None:
            return []
        items = self._windows.snapshot(model, version, self.settings.drift_window)
        if not items:
            return []
        proba = np.array(
            [[r.scores.get(label, 0.0) for label in self.labels] for r in items], dtype=np.float64
        )
        data = DriftData([r.text for r in items], proba, list(self.labels))
        results = self.reference.score(data)
        now = time.time()
        self.latest[(model, version)] = (now, len(items), results)
        self.store.insert(
            "drift",
            [
                {
                    "ts": now,
                    "model": model,
                    "version": version,
                    "detector": r.name,
                    "statistic": _finite(r.statistic),
                    "p_value": _finite(r.p_value),
                    "threshold": _finite(r.threshold),
                    "drift": r.drift,
                    "n": len(items),
                    "reason": r.reason,
                    "detail": r.detail,
                }
                for r in results
            ],
        )
        flagged = [r.name for r in results if r.drift]
        if flagged:
            log.info("drift in %s %s over %d predictions: %s", model, version, len(items), ", ".join(flagged))
        self._on_checked()
        return results


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)
