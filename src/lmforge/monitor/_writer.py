"""The store writer: the request path only enqueues; one thread applies the text policy and inserts batches."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lmforge.monitor._live import Recent, VersionWindow, Windows
from lmforge.monitor._records import PredictionRecord
from lmforge.monitor._settings import MonitorSettings
from lmforge.monitor._text_policy import TextPolicy

__all__ = ["StoreWriter"]

# The writer, drift and alert code of the Monitor log under the name of the Monitor's module,
# so log filters on that name see all of it.
log = logging.getLogger("lmforge.monitor._monitor")

_STOP = object()


class _ErrorEvent:
    __slots__ = ("model", "status", "ts", "version")

    def __init__(self, model: str, version: str, status: int, ts: float) -> None:
        self.model, self.version, self.status, self.ts = model, version, status, ts


class StoreWriter:
    """The queue of predictions and request errors, and the thread that writes it to the store.

    Args:
        settings: queue size, batch size and flush interval.
        windows: the live windows each stored prediction and error is added to.
        schedule_drift: called on the writer thread with the model, version and window of
            each stored prediction (it decides whether a drift check is due).
        on_change: called after a batch stored predictions or errors.
        evaluate_alerts: called after every batch and before each flush marker is released;
            it evaluates the alert rules if anything changed (alerts are evaluated on this thread).
    """

    def __init__(
        self,
        settings: MonitorSettings,
        windows: Windows,
        schedule_drift: Callable[[str, str, VersionWindow], None],
        on_change: Callable[[], None],
        evaluate_alerts: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_size)
        # id -> (model, version, label, ts) of each queued prediction, until it is written
        self.pending: dict[str, tuple[str, str, str, float, str | None]] = {}
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self.pruned = 0
        self._last_prune = time.monotonic()
        self._written_at_prune = 0
        self.invalid = 0
        self.errors = 0
        self.closed = False
        self.store: Any = None
        self._policy: Any = None
        self._windows = windows
        self._schedule_drift = schedule_drift
        self._on_change = on_change
        self._evaluate_alerts = evaluate_alerts
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return self.queue.qsize()

    def start(self, store: Any, policy: TextPolicy) -> None:
        """Start the writer thread on ``store``, storing texts as ``policy`` says."""
        self.store, self._policy = store, policy
        self._thread = threading.Thread(target=self._loop, name="lmforge-monitor-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float, deadline: float) -> bool:
        """Wait until everything queued before this call is written; False (logged) on a timeout."""
        done = threading.Event()
        try:
            self.queue.put(done, timeout=timeout)
        except queue.Full:
            log.warning("monitor flush: the queue stayed full for %.1f s", timeout)
            return False
        if not done.wait(max(deadline - time.monotonic(), 0.0)):
            log.warning("monitor flush timed out after %.1f s", timeout)
            return False
        return True

    def sync(self, deadline: float) -> None:
        """Wait, until ``deadline`` at most, for the writer to reach a marker (it evaluates alerts first)."""
        evaluated = threading.Event()
        try:
            self.queue.put(evaluated, timeout=max(deadline - time.monotonic(), 0.01))
            evaluated.wait(max(deadline - time.monotonic(), 0.0))
        except queue.Full:
            pass

    def shut(self) -> bool:
        """Refuse records from now on (they are counted as dropped); False when already shut."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            return True

    def stop(self) -> None:
        """Write everything still queued, then stop the thread (waits up to 60 s)."""
        if self._thread is None:
            return
        try:
            self.queue.put(_STOP, timeout=60)  # the writer is draining: room comes
        except queue.Full:
            log.error("monitor queue stayed full for 60 s at close")
        self._thread.join(60)
        if self._thread.is_alive():
            log.error("monitor writer did not finish within 60 s; some predictions may be lost")

    # -- request path ----------------------------------------------------------------------
    def record_many(self, records: Sequence[PredictionRecord]) -> None:
        """Queue predictions. Never blocks, never raises; a full queue drops and counts."""
        try:
            if self.closed:
                self._count_drops(len(records))
                return
            put = self.queue.put_nowait
            pending = self.pending
            for i, rec in enumerate(records):
                try:
                    # Known before the writer can see it, so feedback can follow at once.
                    pending[rec.id] = (rec.model, rec.version, rec.label, rec.ts, rec.key_id)
                except Exception:  # not a PredictionRecord: skip it, keep the others
                    self.invalid += 1
                    continue
                try:
                    put(rec)
                except queue.Full:
                    pending.pop(rec.id, None)
                    self._count_drops(len(records) - i)
                    return
        except Exception:  # the request path must never fail because of monitoring
            log.exception("monitor record_many failed")

    def record_error(self, model: str, version: str, status: int) -> None:
        """Queue a failed request. Never blocks, never raises."""
        try:
            self.queue.put_nowait(_ErrorEvent(model, version, int(status), time.time()))
        except Exception:
            self._count_drops(1)

    def _count_drops(self, n: int) -> None:
        with self._lock:
            self.dropped += n
            first_or_thousandth = self.dropped == n or self.dropped % 1000 < n
        if first_or_thousandth:  # not every drop: under overload the log would add to the load
            log.warning(
                "monitor queue full or closed (%d waiting): %d predictions dropped so far",
                self.queue_depth,
                self.dropped,
            )

    # -- writer thread ---------------------------------------------------------------------
    def _take_batch(self) -> list[Any]:
        try:
            first = self.queue.get(timeout=0.25)
        except queue.Empty:
            return []
        batch = [first]
        if first is _STOP or isinstance(first, threading.Event):
            return batch
        deadline = time.monotonic() + self.settings.flush_interval_s
        while len(batch) < self.settings.batch_size:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.queue.get(timeout=min(remaining, 0.25))
                except queue.Empty:
                    continue
            batch.append(item)
            if item is _STOP or isinstance(item, threading.Event):
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            try:
                stop = self._process(batch)
            except Exception:  # the writer must outlive any one bad batch
                log.exception("monitor writer: batch failed")
                stop = any(item is _STOP for item in batch)
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
            self._evaluate_alerts()
            self._maybe_prune()
            if stop:
                return

    def _maybe_prune(self) -> None:
        """Apply ``retention_days`` and ``max_rows``: every ``prune_interval_s``, or sooner when a
        tenth of ``max_rows`` was written since (so a burst cannot overshoot the cap by much)."""
        s = self.settings
        if s.retention_days is None and s.max_rows is None:
            return
        due = time.monotonic() - self._last_prune >= s.prune_interval_s
        burst = s.max_rows is not None and self.written - self._written_at_prune >= max(1, s.max_rows // 10)
        if not (due or burst):
            return
        self._last_prune, self._written_at_prune = time.monotonic(), self.written
        before = None if s.retention_days is None else time.time() - s.retention_days * 86400
        try:
            deleted = self.store.prune(before, s.max_rows)
        except Exception as exc:  # retention must never stop the writer; the next round tries again
            log.warning("monitor: pruning the store failed: %s", exc)
            return
        if deleted:
            self.pruned += deleted
            log.info("monitor: %d old predictions deleted (retention_days %s, max_rows %s)", deleted,
                     s.retention_days, s.max_rows)

    def _process(self, batch: list[Any]) -> bool:
        rows, errors, markers, recent = [], [], [], []
        stop = False
        for item in batch:
            if item is _STOP:
                stop = True
            elif isinstance(item, threading.Event):
                markers.append(item)
            elif isinstance(item, _ErrorEvent):
                errors.append(
                    {"ts": item.ts, "model": item.model, "version": item.version, "status": item.status}
                )
            else:
                try:
                    rows.append(self._row(item))
                    recent.append(item)
                except Exception as exc:  # one malformed record must not sink the batch
                    self.invalid += 1
                    item_id = getattr(item, "id", None)
                    if isinstance(item_id, str):
                        self.pending.pop(item_id, None)
                    log.warning("monitor: invalid prediction record dropped (%s)", exc)
        if rows:
            self._insert_with_retry(rows)
        if errors:
            self.store.insert("errors", errors)
            self.errors += len(errors)
            for _ in errors:
                self._windows.add_error()
        for rec in recent:
            self.pending.pop(rec.id, None)
            win = self._windows.add(
                rec.model,
                rec.version,
                Recent(
                    rec.ts,
                    rec.label,
                    float(rec.confidence),
                    float(rec.latency_ms),
                    rec.text,
                    dict(rec.scores),
                ),
            )
            self._schedule_drift(rec.model, rec.version, win)
        if rows or errors:
            self._on_change()
        if rows:
            self._maybe_prune()  # before the markers: a flush also covers the retention of what it wrote
        for marker in markers:
            self._evaluate_alerts()  # a flush also covers the alerts of what it flushed
            marker.set()
        return stop

    def _row(self, rec: PredictionRecord) -> dict[str, Any]:
        text_hash, stored = self._policy.apply(str(rec.text))
        confidence, latency = float(rec.confidence), float(rec.latency_ms)
        if not (math.isfinite(confidence) and math.isfinite(latency)):
            raise ValueError(f"non-finite confidence or latency in prediction {rec.id!r}")
        return {
            "id": str(rec.id)[:64],
            "ts": float(rec.ts),
            "model": str(rec.model),
            "version": str(rec.version),
            "text_hash": text_hash,
            "text": stored,
            "text_policy": self._policy.policy,
            "label": str(rec.label),
            "confidence": confidence,
            "scores": {str(k): float(v) for k, v in dict(rec.scores).items()},
            "latency_ms": latency,
            "key_id": None if rec.key_id is None else str(rec.key_id)[:32],
        }

    def _insert_with_retry(self, rows: list[dict[str, Any]]) -> None:
        for attempt in range(3):
            try:
                self.store.insert_predictions(rows)
                self.written += len(rows)
                return
            except Exception as exc:  # the database can be locked or away for a moment
                if attempt == 2:
                    self.failed += len(rows)
                    log.error(
                        "monitor: %d predictions lost after 3 attempts to store them: %s", len(rows), exc
                    )
                    for row in rows:
                        self.pending.pop(row["id"], None)
                    return
                time.sleep(0.2 * (attempt + 1))
