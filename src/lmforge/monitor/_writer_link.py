"""The serving side's handle on the store-writer process: start it, read its first answer, stop it.

The process is a plain ``python -c "... lmforge.monitor._writer_process.main()"`` child (not
``multiprocessing``, which pickles what it sends a spawned child), given two pipes by file
descriptor; stdin and stdout are not used, so nothing it prints can corrupt the channel. It
inherits this process's environment (the PII salt, the encryption key), so its text policy
is the one :class:`~lmforge.monitor._text_policy.TextPolicy` validated here at start.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from lmforge.monitor._channel import ChannelError, FrameReader, write_frame
from lmforge.monitor._errors import MonitorError
from lmforge.monitor._records import PredictionRecord
from lmforge.monitor._registry import available_detectors, get_detector
from lmforge.monitor._settings import MonitorSettings

__all__ = [
    "ONE_THREAD",
    "STOP",
    "Chunk",
    "ErrorEvent",
    "Reference",
    "WriterProcess",
    "encode_record",
    "encoder_to_preload",
    "start_again",
    "take_chunk",
]

log = logging.getLogger("lmforge.monitor._monitor")

_CONFIG = ("url", "key_file", "batch_size", "flush_interval_s", "retention_days", "max_rows", "prune_interval_s",
           "drift_every", "drift_window", "drift_min_interval_s")


# Thread pools of one: the writer is background work on cores the server needs. An embedding drift check
# on torch's default pool (one thread per core) cost 3x the CPU of one thread on a busy 2-core machine
# (threads spinning for each other), and NumPy's BLAS the same; set before the child imports either.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# Signals ignored first, before any lmforge import: a group's SIGTERM right after the start must not kill it.
_MAIN = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "from lmforge.monitor._writer_process import main; raise SystemExit(main())"
)

STOP = object()
"""The last item of the buffer: the writer stores what it has, then ends."""


class ErrorEvent:
    """A failed request, as buffered for the writer."""

    __slots__ = ("model", "status", "ts", "version")

    def __init__(self, model: str, version: str, status: int, ts: float) -> None:
        self.model, self.version, self.status, self.ts = model, version, status, ts


class Chunk:
    """What the sender hands the writer in one frame, and what it keeps until the writer acknowledges it."""

    __slots__ = ("error_rows", "markers", "records", "reference", "rows", "seq", "stop")

    def __init__(self) -> None:
        self.seq = 0
        self.records: list[PredictionRecord] = []  # kept here: the live windows take them on acknowledgement
        self.rows: list[list[Any]] = []
        self.error_rows: list[list[Any]] = []
        self.markers: list[threading.Event] = []
        self.reference: Reference | None = None
        self.stop = False

    def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"seq": self.seq, "p": self.rows, "e": self.error_rows}
        if self.markers:
            frame["mark"] = True
        if self.stop:
            frame["stop"] = True
        if self.reference is not None:
            frame["reference"] = self.reference.data
        return frame


class Reference:
    """A new drift reference (its JSON) for the writer, in the buffer's order."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any] | None) -> None:
        self.data = data


def _finite(x: Any, what: str) -> float:
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"non-finite {what}")
    return value


def encode_record(rec: PredictionRecord) -> list[Any]:
    """A prediction as a channel row (the fields of ``_writer_process.FIELDS``, in order).

    Raises:
        ValueError, TypeError, AttributeError: not a valid prediction (non-finite numbers included).
    """
    return [
        str(rec.id),
        _finite(rec.ts, "timestamp"),
        str(rec.model),
        str(rec.version),
        str(rec.text),
        str(rec.label),
        _finite(rec.confidence, f"confidence in prediction {rec.id!r}"),
        {str(k): _finite(v, f"score in prediction {rec.id!r}") for k, v in dict(rec.scores).items()},
        _finite(rec.latency_ms, f"latency in prediction {rec.id!r}"),
        None if rec.key_id is None else str(rec.key_id),
        None if rec.output is None else str(rec.output),
        None if rec.prompt_tokens is None else int(rec.prompt_tokens),
        None if rec.completion_tokens is None else int(rec.completion_tokens),
    ]


def encoder_to_preload(settings: MonitorSettings) -> list[Any] | None:
    """``[model, max_length]`` of the embedding check's encoder when the monitor has a reference run and
    that check is on, else None.

    The writer loads it (torch and the model: CPU-seconds, once) beside the server's own start, while
    the server loads the reference, instead of at its first check, when that CPU came out of the
    first seconds of serving.
    """
    names = available_detectors() if settings.detectors is None else settings.detectors
    if not settings.reference_run or "embedding" not in names:
        return None
    try:
        detector = get_detector("embedding", **settings.detector_options.get("embedding", {}))
    except Exception:  # a bad option is reported where the reference is fitted, not here
        return None
    return [str(getattr(detector, "model")), int(getattr(detector, "max_length"))]  # noqa: B009 - not on the base class


def take_chunk(buffer: deque[Any], size: int, invalid: Callable[[Any, Exception], None]) -> Chunk | None:
    """The next chunk off ``buffer``: up to ``size`` records, ended early by a marker, a reference or
    the stop; None when there is nothing to send. ``invalid`` is told of each record it drops."""
    chunk = Chunk()
    while buffer and len(chunk.records) + len(chunk.error_rows) < size:
        item = buffer.popleft()
        if item is STOP:
            chunk.stop = True
            break
        if isinstance(item, threading.Event):
            chunk.markers.append(item)
            break
        if isinstance(item, Reference):
            chunk.reference = item
            break
        if isinstance(item, ErrorEvent):
            chunk.error_rows.append([item.ts, item.model, item.version, item.status])
            continue
        try:
            chunk.rows.append(encode_record(item))
            chunk.records.append(item)
        except Exception as exc:  # one malformed record must not sink the batch
            invalid(item, exc)
    return chunk if chunk.rows or chunk.error_rows or chunk.markers or chunk.stop or chunk.reference else None


class WriterProcess:
    """One writer process and its two pipes (``fd_out``: frames to it; ``fd_in``: its answers)."""

    def __init__(
        self, settings: MonitorSettings, policy: str, labels: list[str], reference: dict[str, Any] | None
    ) -> None:
        self.policy = policy
        child_in, self.fd_out = os.pipe()
        self.fd_in, child_out = os.pipe()
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, a module of this package
                [sys.executable, "-c", _MAIN, str(child_in), str(child_out)],
                pass_fds=(child_in, child_out),
                env={**os.environ, **ONE_THREAD},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            os.close(child_in)
            os.close(child_out)
        self.pid = self.proc.pid
        self._fd_lock = threading.Lock()  # an fd number is reused once closed: close each exactly once
        self.reader = FrameReader(self.fd_in)
        self.early: list[dict[str, Any]] = []  # frames that came with the ready frame
        self.heavy: list[str] = []
        self.ready = False
        config = {k: getattr(settings, k) for k in _CONFIG}
        config.update(text_policy=policy, labels=list(labels), reference=reference,
                      preload=encoder_to_preload(settings))
        try:
            write_frame(self.fd_out, {"config": config})
        except OSError:
            pass  # it died at once: wait_ready says so

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for the process to open the store.

        Raises:
            MonitorError: it could not (its reason), it ended, or it did not answer in ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                frames = self.reader.read(left) if left > 0 else []
            except (ChannelError, OSError) as exc:
                self.kill()
                raise MonitorError(f"The monitor's store writer answered garbage at start ({exc}).") from None
            if self.reader.eof or (left <= 0 and not frames):
                self.kill()
                code = self.reap()
                why = "ended" if left > 0 else f"did not answer within {timeout:.0f} s"
                raise MonitorError(
                    f"The monitor's store writer process {why} (status {code}); see the log above for its error."
                )
            for i, frame in enumerate(frames):
                if "fatal" in frame:
                    self.reap()
                    raise MonitorError(f"The monitor's store writer could not start: {frame['fatal']}")
                self.on_start_frame(frame)
                if "ready" in frame:
                    self.early = frames[i + 1 :]
                    return

    def on_start_frame(self, frame: dict[str, Any]) -> None:
        """Handle a frame of its start-up (or its log): ``ready`` (what it imported), ``fatal``, ``log``."""
        if "ready" in frame:
            self.ready = True
            self.heavy = [str(m) for m in frame.get("heavy", [])]
            if self.heavy:
                log.warning("monitor writer process imported %s", ", ".join(self.heavy))
        elif "fatal" in frame:
            log.error("monitor writer (pid %d) could not start: %s", self.pid, frame["fatal"])
        elif "log" in frame:
            level, message = frame["log"]
            log.log(int(level), "%s", message)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def reap(self, timeout: float = 30.0) -> int | None:
        """Wait for the process to end (killed after ``timeout`` s) and close the pipes; its exit status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("monitor writer (pid %d) did not end within %.0f s; killed", self.pid, timeout)
            self.proc.kill()
            code = self.proc.wait()
        self.close_input()
        with self._fd_lock:
            if self.fd_in >= 0:
                os.close(self.fd_in)
                self.fd_in = -1
        return code

    def close_input(self) -> None:
        """Close the pipe to it (once): it stores what it has, then ends."""
        with self._fd_lock:
            if self.fd_out >= 0:
                os.close(self.fd_out)
                self.fd_out = -1


def start_again(
    settings: MonitorSettings, policy: str, labels: list[str], reference: dict[str, Any] | None, delay: float,
    closing: Callable[[], bool],
) -> WriterProcess | None:
    """A new writer process after one died, tried after ``delay`` s and then ever slower (30 s at most)
    until one starts; None when it fails while the monitor is ``closing``."""
    delay = min(delay, 30.0)  # a writer that keeps dying is retried slower
    while True:
        time.sleep(delay)
        try:
            proc = WriterProcess(settings, policy, labels, reference)
            proc.wait_ready()
        except Exception as exc:
            if closing():
                log.error("monitor writer could not be started again (%s) while closing", exc)
                return None
            delay = min(delay * 2, 30.0)
            log.error("monitor writer could not be started again (%s); retrying in %.1f s", exc, delay)
            continue
        log.info("monitor writer started again (pid %d)", proc.pid)
        return proc
