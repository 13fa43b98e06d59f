"""The serving side's handle on the store-writer process: start it, read its first answer, stop it.

The process is a plain ``python -m lmforge.monitor._writer_process`` child (not
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
from collections.abc import Callable
from typing import Any

from lmforge.monitor._channel import ChannelError, FrameReader, write_frame
from lmforge.monitor._errors import MonitorError
from lmforge.monitor._records import PredictionRecord
from lmforge.monitor._settings import MonitorSettings

__all__ = ["Chunk", "ErrorEvent", "WriterProcess", "encode_record", "start_again"]

log = logging.getLogger("lmforge.monitor._monitor")

_CONFIG = ("url", "key_file", "batch_size", "flush_interval_s", "retention_days", "max_rows", "prune_interval_s")


class ErrorEvent:
    """A failed request, as buffered for the writer."""

    __slots__ = ("model", "status", "ts", "version")

    def __init__(self, model: str, version: str, status: int, ts: float) -> None:
        self.model, self.version, self.status, self.ts = model, version, status, ts


class Chunk:
    """What the sender hands the writer in one frame, and what it keeps until the writer acknowledges it."""

    __slots__ = ("error_rows", "markers", "records", "rows", "seq", "stop")

    def __init__(self) -> None:
        self.seq = 0
        self.records: list[PredictionRecord] = []  # kept here: the live windows take them on acknowledgement
        self.rows: list[list[Any]] = []
        self.error_rows: list[list[Any]] = []
        self.markers: list[threading.Event] = []
        self.stop = False

    def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"seq": self.seq, "p": self.rows, "e": self.error_rows}
        if self.markers:
            frame["mark"] = True
        if self.stop:
            frame["stop"] = True
        return frame


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
    ]


class WriterProcess:
    """One writer process and its two pipes (``fd_out``: frames to it; ``fd_in``: its answers)."""

    def __init__(self, settings: MonitorSettings, policy: str) -> None:
        self.policy = policy
        child_in, self.fd_out = os.pipe()
        self.fd_in, child_out = os.pipe()
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, a module of this package
                [sys.executable, "-m", "lmforge.monitor._writer_process", str(child_in), str(child_out)],
                pass_fds=(child_in, child_out),
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
        config = {k: getattr(settings, k) for k in _CONFIG}
        config["text_policy"] = policy
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
                if "ready" in frame:
                    self.heavy = list(frame.get("heavy", []))
                    if self.heavy:
                        log.warning("monitor writer process imported %s", ", ".join(self.heavy))
                    self.early = frames[i + 1 :]
                    return
                if "log" in frame:
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
    settings: MonitorSettings, policy: str, delay: float, closing: Callable[[], bool]
) -> WriterProcess | None:
    """A new writer process after one died, tried after ``delay`` s and then ever slower (30 s at most)
    until one starts; None when it fails while the monitor is ``closing``."""
    delay = min(delay, 30.0)  # a writer that keeps dying is retried slower
    while True:
        time.sleep(delay)
        try:
            proc = WriterProcess(settings, policy)
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
