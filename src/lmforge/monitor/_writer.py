"""The store writer: the request path only appends; a writer *process* applies the text policy and inserts.

Redaction and SQLAlchemy inserts are Python CPU work: on a thread they took the serving process's GIL from
the request path. They run in their own interpreter (``_writer_process``), fed through a pipe of JSON lines
(``_channel``: no pickle). In this process:

- ``record_many`` appends to a bounded buffer (``queue_size``; beyond it records are dropped and counted)
  and notes each id in ``pending``, so feedback can follow at once;
- a *sender* thread wakes every few milliseconds, encodes what is buffered as chunks and writes them to
  the pipe (a full pipe blocks only this thread; the buffer then fills and drops);
- a *receiver* thread reads the writer's acknowledgements: for each stored chunk it adds the predictions
  to the live windows, evaluates alerts and releases the flush markers; what changes a metric without a
  prediction (feedback) sends a marker of its own (``nudge``). Drift checks run in the writer process
  (``_drift_process``) and their results come back here. The live windows, the latest drift results and
  alerts stay here, where the server's endpoints read them.

A writer process that dies is noticed by the receiver (its pipe ends): logged, counted (``restarts``), what
it held unacknowledged counted as failed, and started again.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from lmforge.monitor._channel import ChannelError, write_frame
from lmforge.monitor._live import Recent, Windows
from lmforge.monitor._records import PredictionRecord
from lmforge.monitor._settings import MonitorSettings
from lmforge.monitor._text_policy import TextPolicy
from lmforge.monitor._writer_link import (
    STOP,
    Chunk,
    ErrorEvent,
    Reference,
    WriterProcess,
    start_again,
    take_chunk,
)

__all__ = ["StoreWriter"]

# Under the Monitor's module name, as its drift and alert code: log filters on that name see all of it.
log = logging.getLogger("lmforge.monitor._monitor")
_TICK_S = 0.02  # how long a record waits, at most, before the sender hands it to the writer process


class StoreWriter:
    """The buffer of predictions and request errors, and the writer process that stores it.

    Args:
        settings: queue size, batch size, flush interval and retention.
        windows: the live windows each stored prediction and error is added to.
        labels: the model's labels (drift checks, in the writer process, read scores in this order).
        on_drift: called with ``(model, version, ts, n, results)`` of each drift check the writer ran.
        on_change: called after a batch stored predictions or errors.
        evaluate_alerts: called after every acknowledged batch and before each flush marker is
            released; it evaluates the alert rules if anything changed.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        windows: Windows,
        labels: list[str],
        on_drift: Callable[[str, str, float, int, list[dict[str, Any]]], None],
        on_change: Callable[[], None],
        evaluate_alerts: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.buffer: deque[Any] = deque()
        # id -> (model, version, label, ts, key_id, generated) of each recorded prediction, until it is written
        self.pending: dict[str, tuple[str, str, str, float, str | None, bool]] = {}
        self.dropped = self.written = self.failed = self.pruned = self.invalid = self.errors = self.restarts = 0
        self.closed = False
        self.store: Any = None
        self._windows = windows
        self.labels = list(labels)
        self._on_drift = on_drift
        self.reference: dict[str, Any] | None = None  # the drift reference's JSON, for every writer started
        self._on_change = on_change
        self._evaluate_alerts = evaluate_alerts
        self._lock = threading.Lock()  # counters touched by several threads
        self._wake = threading.Event()
        self._proc: WriterProcess | None = None
        self._io = threading.Lock()  # the sender's writes vs closing a dead writer's pipes
        self._books = threading.Lock()  # the chunks in flight and the current process
        self._inflight: dict[int, Chunk] = {}  # sent, not yet acknowledged, by sequence number
        self._seq = 0
        self._stopping = False
        self._sender: threading.Thread | None = None
        self._receiver: threading.Thread | None = None
        self._nudge: threading.Event | None = None  # the marker of the last nudge, set once it was handled

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._sender is not None

    @property
    def running(self) -> bool:
        return self._sender is not None and self._sender.is_alive()  # a writer being restarted is running

    @property
    def queue_depth(self) -> int:
        """Records buffered here, not yet handed to the writer process."""
        return len(self.buffer)

    @property
    def pid(self) -> int | None:
        """The writer process's id (None before start)."""
        return None if self._proc is None else self._proc.pid

    def spawn(self, policy: TextPolicy) -> None:
        """Start the writer process early, so its imports overlap the server's own start-up."""
        self._proc = WriterProcess(self.settings, policy.policy, self.labels, self.reference)

    def set_reference(self, data: dict[str, Any] | None) -> None:
        """A new drift reference (JSON) for the writer's checks, handed over in the buffer's order."""
        self.reference = data
        self.buffer.append(Reference(data))  # like a marker, never dropped
        self._wake.set()

    def abort(self) -> None:
        """End a writer process that :meth:`spawn` started when the monitor's start failed."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.close_input()
            proc.reap(10)

    def start(self, store: Any, policy: TextPolicy) -> None:
        """Wait until the writer process (spawned by :meth:`spawn`, else now) opened the store; start the threads.

        Raises:
            MonitorError: it could not (its reason), or did not answer within 120 s.
        """
        self.store = store
        if self._proc is None:
            self._proc = WriterProcess(self.settings, policy.policy, self.labels, self.reference)
        try:
            self._proc.wait_ready()
        except BaseException:
            self._proc = None
            raise
        self._sender = threading.Thread(target=self._send_loop, name="lmforge-monitor-sender", daemon=True)
        self._receiver = threading.Thread(target=self._receive_loop, name="lmforge-monitor-receiver", daemon=True)
        self._receiver.start()
        self._sender.start()

    def _marker(self) -> threading.Event:
        """A marker after what is buffered now: set once the writer stored it all and evaluated the alerts."""
        done = threading.Event()
        self.buffer.append(done)  # a marker is never dropped: it does not count against queue_size
        self._wake.set()
        return done

    def flush(self, timeout: float, deadline: float) -> bool:
        """Wait until everything recorded before this call is written; False (logged) on a timeout."""
        if self._marker().wait(max(deadline - time.monotonic(), 0.0)):
            return True
        log.warning("monitor flush timed out after %.1f s", timeout)
        return False

    def nudge(self) -> None:
        """Evaluate the alerts soon, predictions or not: a marker nobody waits for, one on its way at most."""
        if self._nudge is None or self._nudge.is_set():
            self._nudge = self._marker()

    def shut(self) -> bool:
        """Refuse records from now on (they are counted as dropped); False when already shut."""
        with self._lock:
            was_open, self.closed = not self.closed, True
            return was_open

    def stop(self) -> None:
        """Hand over everything still buffered, let the writer process store it and end (waits up to 60 s)."""
        if self._sender is None:
            return
        self.buffer.append(STOP)
        self._wake.set()
        self._sender.join(60)
        if self._receiver is not None:
            self._receiver.join(60)
        if self._receiver is not None and self._receiver.is_alive():
            log.error("monitor writer did not finish within 60 s; some predictions may be lost")
        proc = self._proc
        if proc is not None:
            proc.close_input()
            proc.reap(10)

    # -- request path ----------------------------------------------------------------------
    def record_many(self, records: Sequence[PredictionRecord]) -> None:
        """Buffer predictions. Never blocks, never raises; a full buffer drops and counts."""
        try:
            if self.closed:
                self._count_drops(len(records))
                return
            buffer, pending, room = self.buffer, self.pending, self.settings.queue_size
            for i, rec in enumerate(records):
                try:
                    # Known before the writer sees it, so feedback can follow at once (last: a generation?).
                    pending[rec.id] = rec.model, rec.version, rec.label, rec.ts, rec.key_id, rec.output is not None
                except Exception:  # not a PredictionRecord: skip it, keep the others
                    with self._lock:
                        self.invalid += 1
                    continue
                if len(buffer) >= room:
                    pending.pop(rec.id, None)
                    self._count_drops(len(records) - i)
                    return
                buffer.append(rec)
        except Exception:  # the request path must never fail because of monitoring
            log.exception("monitor record_many failed")

    def record_error(self, model: str, version: str, status: int) -> None:
        """Buffer a failed request. Never blocks, never raises."""
        try:
            if self.closed or len(self.buffer) >= self.settings.queue_size:
                self._count_drops(1)
                return
            self.buffer.append(ErrorEvent(model, version, int(status), time.time()))
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

    # -- sender thread ---------------------------------------------------------------------
    def _invalid(self, item: Any, exc: Exception) -> None:
        """One malformed record is dropped alone (counted), never sinking its chunk."""
        with self._lock:
            self.invalid += 1
        item_id = getattr(item, "id", None)
        if isinstance(item_id, str):
            self.pending.pop(item_id, None)
        log.warning("monitor: invalid prediction record dropped (%s)", exc)

    def _send_loop(self) -> None:
        take = functools.partial(take_chunk, self.buffer, self.settings.batch_size, self._invalid)
        while True:
            self._wake.wait(_TICK_S)
            self._wake.clear()
            if self._proc is None:  # being restarted: the buffer waits (and drops when full)
                if self._receiver is not None and not self._receiver.is_alive():
                    while (lost := take()) is not None:  # no writer will come back
                        self._fail(lost)
                    return
                continue
            while (chunk := take()) is not None:
                self._send(chunk)
                if chunk.stop:
                    return

    def _send(self, chunk: Chunk) -> None:
        # Not under the books' lock: while a full pipe blocks this write, the receiver must take acks.
        with self._io:
            with self._books:
                proc = self._proc
                if proc is not None:
                    self._seq += 1
                    chunk.seq = self._seq
                    self._inflight[chunk.seq] = chunk
            if proc is None:
                self._fail(chunk)
                return
            try:
                write_frame(proc.fd_out, chunk.frame())
            except OSError:  # it died: the receiver notices, restarts it and fails this chunk
                pass
            except ValueError as exc:  # not encodable (rows are checked first, so this is a bug)
                log.error("monitor: a chunk could not be encoded: %s", exc)
                with self._books:
                    failed = self._inflight.pop(chunk.seq, None)
                if failed is not None:
                    self._fail(failed)

    # -- receiver thread -------------------------------------------------------------------
    def _receive_loop(self) -> None:
        while True:
            proc = self._proc
            if proc is None:
                return
            ended = self._read_until_exit(proc)
            if ended:  # a clean end after the stop frame
                return
            if not self._restart(proc):
                return

    def _read_until_exit(self, proc: WriterProcess) -> bool:
        """Handle the process's frames until its pipe ends; True when that was the clean stop."""
        reader = proc.reader
        frames, proc.early = proc.early, []
        while True:
            for frame in frames:
                self._on_frame(frame)
            try:
                frames = reader.read(None)
            except (ChannelError, OSError) as exc:
                log.error("monitor writer (pid %d): unreadable answer (%s)", proc.pid, exc)
                proc.kill()
                return False
            if reader.eof:
                return self._stopping and not self._inflight

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if "log" in frame or "fatal" in frame or "ready" in frame:
            if self._proc is not None:
                self._proc.on_start_frame(frame)
            return
        if "drift" in frame:
            model, version, ts, n, results = frame["drift"]
            self._on_drift(str(model), str(version), float(ts), int(n), list(results))
            return
        if "pr" in frame:
            with self._lock:
                self.pruned += int(frame["pr"])
        if "upto" not in frame:
            return
        with self._books:
            done = sorted(s for s in self._inflight if s <= int(frame["upto"]))
            chunks = [self._inflight.pop(s) for s in done]
        self._acknowledged(chunks, frame)

    def _acknowledged(self, chunks: list[Chunk], ack: dict[str, Any]) -> None:
        """The writer stored these chunks: the live windows, drift, alerts and flush markers follow."""
        invalid = set(ack.get("i", ()))
        with self._lock:
            self.written += int(ack.get("w", 0))
            self.failed += int(ack.get("f", 0))
            self.invalid += len(invalid)
            self.errors += int(ack.get("e", 0))
        if any(c.stop for c in chunks):
            self._stopping = True
        changed = False
        for chunk in chunks:
            for rec in chunk.records:
                self.pending.pop(rec.id, None)
                if rec.id in invalid:
                    continue
                self._windows.add(
                    rec.model,
                    rec.version,
                    Recent(rec.ts, rec.label, float(rec.confidence), float(rec.latency_ms), rec.text,
                           dict(rec.scores)),
                )
            for _ in chunk.error_rows:
                self._windows.add_error()
            changed = changed or bool(chunk.records or chunk.error_rows)
        if changed:
            self._on_change()
        self._evaluate_alerts()
        for chunk in chunks:
            for marker in chunk.markers:
                self._evaluate_alerts()  # a flush also covers the alerts of what it flushed
                marker.set()

    def _fail(self, chunk: Chunk) -> None:
        """A chunk the writer never acknowledged: its predictions are lost (counted), its markers released."""
        with self._lock:
            self.failed += len(chunk.records)
        for rec in chunk.records:
            self.pending.pop(rec.id, None)
        for marker in chunk.markers:
            marker.set()

    def _restart(self, dead: WriterProcess) -> bool:
        """The writer process died: count it, fail what it held, start another; False when stopping."""
        with self._io:  # no write is under way to the pipe reap() closes
            code = dead.reap()
        with self._books:
            self._proc = None
            lost = [self._inflight.pop(s) for s in sorted(self._inflight)]
            for chunk in lost:
                self._fail(chunk)
            if self._stopping or any(c.stop for c in lost):
                log.error("monitor writer (pid %d) ended with status %s while stopping", dead.pid, code)
                return False
            with self._lock:
                self.restarts += 1
            log.error("monitor writer (pid %d) died with status %s; %d predictions it held are lost; starting another "
                      "(restart %d)", dead.pid, code, sum(len(c.records) for c in lost), self.restarts)
        delay = 0.1 * 2.0 ** (self.restarts - 1)  # a writer that keeps dying is retried slower
        proc = start_again(self.settings, dead.policy, self.labels, self.reference, delay, lambda: self.closed)
        with self._books:
            self._proc = proc
        return proc is not None
