"""The store-writer process: text policy, PII redaction, batched inserts and retention, off the server's GIL.

Started by :class:`lmforge.monitor._writer.StoreWriter` (``_writer_link``) as ``python -c`` calling
:func:`main` with ``IN_FD OUT_FD``. It reads frames (``_channel``: JSON lines) from IN_FD: first ``{"config": {...}}``,
then chunks ``{"seq", "p": [prediction rows], "e": [error rows], "mark"?, "stop"?}``. It gathers
chunks into a batch (``batch_size`` predictions, or ``flush_interval_s`` after the first, or at
once for a chunk that marks a flush or the stop), stores it, prunes when due, runs the drift
checks it made due (``_drift_process``) and answers
``{"upto": seq, "w", "f", "i", "e"}`` (written, failed, invalid ids, errors) on OUT_FD; log
records travel as ``{"log": [level, message]}`` so they reach the server's own log.

It ignores SIGINT and SIGTERM: a signal meant for the whole process group (Ctrl-C, systemd)
must not kill it before the server has handed over what it acknowledged. It ends at the stop
frame, or when the server's end of the pipe closes (the server died): then it stores what it
has first. It imports SQLAlchemy and the PII redactor, never torch.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from typing import Any

from lmforge.monitor._channel import ChannelError, FrameReader, write_frame
from lmforge.monitor._drift_process import ProcessDrift
from lmforge.monitor._store import Store
from lmforge.monitor._text_policy import TextPolicy

__all__ = ["NICE", "main"]

NICE = 10
"""How much lower than the server's the writer's CPU priority is (``os.nice``)."""

# Fields of a prediction row on the channel, in order (a list is half the bytes of an object).
FIELDS = ("id", "ts", "model", "version", "text", "label", "confidence", "scores", "latency_ms", "key_id", "output",
          "prompt_tokens", "completion_tokens")


class _Forward(logging.Handler):
    """Log records of this process sent to the server, which logs them under its own configuration."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_frame(self.out, {"log": [record.levelno, record.getMessage()]})
        except Exception:  # the server is gone: nothing to tell
            pass


class _Writer:
    def __init__(self, config: dict[str, Any], out: int) -> None:
        self.c = config
        self.out = out
        self.policy = TextPolicy(config["text_policy"], config.get("key_file"))
        self.store = Store(config["url"])
        self.drift = ProcessDrift(config, self.store, out)
        self.log = logging.getLogger("lmforge.monitor._monitor")
        self.written = 0
        self._last_prune = time.monotonic()
        self._written_at_prune = 0

    def row(self, p: list[Any]) -> dict[str, Any]:
        rec = dict(zip(FIELDS, p, strict=True))
        text_hash, stored = self.policy.apply(str(rec["text"]))
        confidence, latency = float(rec["confidence"]), float(rec["latency_ms"])
        if not (math.isfinite(confidence) and math.isfinite(latency)):
            raise ValueError(f"non-finite confidence or latency in prediction {rec['id']!r}")
        scores = rec["scores"]
        if not isinstance(scores, dict):
            raise ValueError(f"scores of prediction {rec['id']!r} are not a mapping")
        return {
            "id": str(rec["id"])[:64],
            "ts": float(rec["ts"]),
            "model": str(rec["model"]),
            "version": str(rec["version"]),
            "text_hash": text_hash,
            "text": stored,
            "text_policy": self.policy.policy,
            "label": str(rec["label"]),
            "confidence": confidence,
            "scores": {str(k): float(v) for k, v in scores.items()},
            "latency_ms": latency,
            "key_id": None if rec["key_id"] is None else str(rec["key_id"])[:32],
            # a generated answer is stored as its prompt is: PII masked (or hashed, or encrypted)
            "output": None if rec["output"] is None else self.policy.apply(str(rec["output"]))[1],
            "prompt_tokens": None if rec["prompt_tokens"] is None else int(rec["prompt_tokens"]),
            "completion_tokens": None if rec["completion_tokens"] is None else int(rec["completion_tokens"]),
        }

    def process(self, chunks: list[dict[str, Any]]) -> None:
        """Store one batch of chunks, prune when due, acknowledge them."""
        rows, valid, errors, invalid = [], [], [], []
        for chunk in chunks:
            for p in chunk.get("p", ()):
                try:
                    rows.append(self.row(p))
                    valid.append(p)
                except Exception as exc:  # one malformed record must not sink the batch
                    invalid.append(str(p[0]) if isinstance(p, list) and p else "")
                    self.log.warning("monitor: invalid prediction record dropped (%s)", exc)
            errors += [
                {"ts": float(ts), "model": str(m), "version": str(v), "status": int(s)}
                for ts, m, v, s in chunk.get("e", ())
            ]
        written = failed = 0
        size = max(1, int(self.c["batch_size"]))
        for i in range(0, len(rows), size):
            ok = self.insert_with_retry(rows[i : i + size])
            written, failed = written + ok, failed + len(rows[i : i + size]) - ok
        stored_errors = 0
        if errors:
            try:
                self.store.insert("errors", errors)
                stored_errors = len(errors)
            except Exception as exc:
                self.log.warning("monitor: %d request errors not stored: %s", len(errors), exc)
        self.written += written
        pruned = self.maybe_prune() if rows else 0  # before the ack: a flush also covers retention
        self.drift.add(valid)
        self.drift.run_due(time.monotonic(), time.time())  # and the drift checks these predictions made due
        try:
            write_frame(self.out, {"upto": chunks[-1]["seq"], "w": written, "f": failed, "i": invalid,
                                   "e": len(errors), "es": stored_errors, "pr": pruned})
        except OSError:  # the server is gone (killed): what it sent is stored all the same
            pass

    def insert_with_retry(self, rows: list[dict[str, Any]]) -> int:
        for attempt in range(3):
            try:
                self.store.insert_predictions(rows)
                return len(rows)
            except Exception as exc:  # the database can be locked or away for a moment
                if attempt == 2:
                    self.log.error("monitor: %d predictions lost after 3 attempts to store them: %s", len(rows), exc)
                    return 0
                time.sleep(0.2 * (attempt + 1))
        return 0  # pragma: no cover - the loop returns

    def maybe_prune(self) -> int:
        """Apply ``retention_days`` and ``max_rows``: every ``prune_interval_s``, or sooner when a
        tenth of ``max_rows`` was written since (so a burst cannot overshoot the cap by much)."""
        days, max_rows = self.c["retention_days"], self.c["max_rows"]
        if days is None and max_rows is None:
            return 0
        due = time.monotonic() - self._last_prune >= float(self.c["prune_interval_s"])
        burst = max_rows is not None and self.written - self._written_at_prune >= max(1, max_rows // 10)
        if not (due or burst):
            return 0
        self._last_prune, self._written_at_prune = time.monotonic(), self.written
        before = None if days is None else time.time() - days * 86400
        try:
            deleted = int(self.store.prune(before, max_rows))
        except Exception as exc:  # retention must never stop the writer; the next round tries again
            self.log.warning("monitor: pruning the store failed: %s", exc)
            return 0
        if deleted:
            self.log.info("monitor: %d old predictions deleted (retention_days %s, max_rows %s)", deleted,
                          days, max_rows)
        return deleted


def _loop(reader: FrameReader, writer: _Writer, out: int, frames: list[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    n = 0
    first_at = 0.0
    interval = float(writer.c["flush_interval_s"])
    while True:
        stop = reader.eof  # the server died: store what it sent, then end
        marked = False
        for frame in frames:
            if "reference" in frame:
                writer.drift.set_reference(frame["reference"])
            if not batch:
                first_at = time.monotonic()
            batch.append(frame)
            n += len(frame.get("p", ()))
            stop = stop or bool(frame.get("stop"))
            marked = marked or bool(frame.get("mark"))
        due = batch and (n >= writer.c["batch_size"] or time.monotonic() - first_at >= interval or stop or marked)
        if due:
            writer.process(batch)
            batch, n = [], 0
        elif not batch:
            pruned = writer.maybe_prune()  # idle: retention still runs on time
            if pruned and not reader.eof:
                write_frame(out, {"pr": pruned})
        if stop:
            return
        wait = 0.25 if not batch else max(min(first_at + interval - time.monotonic(), 0.25), 0.0)
        frames = reader.read(wait)


def main(argv: list[str] | None = None) -> int:
    """Run the writer on the two file descriptors in ``argv`` until the stop frame or end of input."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Storing is background work: when the cores are busy, serving goes first. The buffer absorbs
    # bursts; a writer that cannot keep up drops and counts, as a full queue always did.
    try:
        os.nice(NICE)
    except OSError:  # not allowed here: the default priority does too
        pass
    fd_in, fd_out = int(args[0]), int(args[1])
    root = logging.getLogger()
    root.handlers[:] = [_Forward(fd_out)]
    root.setLevel(logging.INFO)
    reader = FrameReader(fd_in)
    try:
        frames: list[dict[str, Any]] = []
        while not frames and not reader.eof:
            frames = reader.read(None)
        if not frames or not isinstance(frames[0].get("config"), dict):
            raise ValueError("the first monitor frame must be the writer's config")
        writer = _Writer(frames[0]["config"], fd_out)
    except Exception as exc:  # told to the server, which raises it from start()
        write_frame(fd_out, {"fatal": f"{type(exc).__name__}: {exc}"})
        return 2
    heavy = sorted(m for m in ("onnxruntime", "torch", "transformers") if m in sys.modules)
    write_frame(fd_out, {"ready": os.getpid(), "heavy": heavy})
    preload = writer.drift.preload(frames[0]["config"].get("preload"))  # after ready: it never delays the start
    try:
        _loop(reader, writer, fd_out, frames[1:])
    except ChannelError as exc:  # never parsed further: the server's stream is not what it should be
        writer.log.error("monitor writer: refused a frame from the server (%s); the writer stops", exc)
        return 3
    finally:
        if preload is not None:
            preload.join(120)  # an interpreter ending under a thread mid-import can crash
        writer.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
