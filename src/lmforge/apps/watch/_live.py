"""The watch over a live stream: windows close as time advances, and alert the moment they do.

:class:`LiveWatch` takes time-ordered rows in batches (each batch scored in one model call), keeps
the open window of every topic, and when a row of a later window arrives closes the earlier ones
and judges them, per topic, with the same :class:`IncidentTracker` a replay uses; so a sorted stream
gives the same alerts either way. A row for a window already closed is late: counted and skipped.
``lmforge watch serve`` feeds it the batches ``POST /v1/ingest`` receives (``_server.py``), without
keeping the texts (``keep_texts=False``) and with a bounded history per topic (``max_windows``).

:func:`follow` drives it from JSON lines (stdin, ``tail -f``): a batch is scored when it is full or
when no more input is waiting, so a quiet stream is scored line by line and a busy one in batches.
"""

from __future__ import annotations

import json
import logging
import select
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

from lmforge.apps.watch._aggregate import WindowStats
from lmforge.apps.watch._incidents import IncidentTracker, Verdict
from lmforge.apps.watch._score import Scored, Scorer
from lmforge.apps.watch._sources import StreamRow
from lmforge.apps.watch._time import parse_time, window_start
from lmforge.config import WatchConfig
from lmforge.errors import DataError

__all__ = ["LiveWatch", "follow"]

log = logging.getLogger(__name__)

_CHECK_AFTER = 100  # rows read before the bad-row share can stop a live stream


class LiveWatch:
    """Per-topic windows and detectors over a stream that arrives in time order.

    Args:
        cfg: the watch section.
        scorer: the loaded models.
        on_alert: called with each alert line as its window closes.
        detector: the detector by name (default ``cfg.detector``).
        keep_texts: keep every text and its score (the replay report's top negative texts); a server
            keeps only the window counts.
        max_windows: closed windows kept per topic (the oldest verdicts are dropped; a detector's state
            is its own, so dropping them changes no later verdict); None: all.
    """

    def __init__(self, cfg: WatchConfig, scorer: Scorer, on_alert: Callable[[dict[str, Any]], None] | None = None,
                 detector: str | None = None, *, keep_texts: bool = True, max_windows: int | None = None) -> None:
        self.cfg, self.scorer, self.on_alert = cfg, scorer, on_alert
        self.detector = detector or cfg.detector
        self.keep_texts, self.max_windows = keep_texts, max_windows
        self.open: dict[str, WindowStats] = {}
        self.trackers: dict[str, IncidentTracker] = {}
        self.verdicts: dict[str, list[Verdict]] = {}
        self.alerts: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.negative_proba: list[float] = []
        self.negative: list[bool] = []
        self.newest: float | None = None
        """Start of the newest window seen: every window before it is closed."""
        self.late = 0
        self.accepted = 0
        self.seconds = 0.0

    def feed(self, rows: Sequence[StreamRow], topics: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """Score ``rows`` and add them; returns the alerts of the windows that closed.

        ``topics``: per row, a topic given with it (used instead of the topic run's), or None.
        """
        if not rows:
            return []
        return self.add(rows, self.scorer.score([r.text for r in rows]), topics)

    def add(self, rows: Sequence[StreamRow], scored: Scored,
            topics: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """Add rows scored already (``scored`` holds one score per row); returns the alerts of the windows that closed."""
        self.seconds += scored.seconds
        given = topics if topics is not None else [None] * len(rows)
        fired: list[dict[str, Any]] = []
        for row, neg, proba, predicted, own in zip(rows, scored.negative, scored.negative_proba, scored.topics, given,
                                                   strict=True):
            topic = own or predicted
            start = window_start(row.time, self.cfg.window_s)
            if self.newest is not None and start < self.newest:  # its window has closed
                self.late += 1
                continue
            if self.newest is None or start > self.newest:
                fired += self._close(before=start)
                self.newest = start
            cell = self.open.get(topic)
            if cell is None:
                cell = self.open[topic] = WindowStats(start=start, end=start + self.cfg.window_s, topic=topic)
            cell.n += 1
            cell.negative += int(bool(neg))
            cell.score_sum += float(proba)
            self.accepted += 1
            if self.keep_texts:
                cell.rows.append(len(self.texts))
                self.texts.append(row.text)
                self.negative_proba.append(float(proba))
                self.negative.append(bool(neg))
        return fired

    def close(self) -> list[dict[str, Any]]:
        """The stream ended: judge every open window; returns their alerts."""
        return self._close(before=None)

    def _close(self, before: float | None) -> list[dict[str, Any]]:
        closing = sorted((w for w in self.open.values() if before is None or w.start < before),
                         key=lambda w: (w.start, w.topic))
        fired = []
        for w in closing:
            del self.open[w.topic]
            tracker = self.trackers.get(w.topic)
            if tracker is None:
                cfg = self.cfg
                threshold = cfg.threshold if self.detector == cfg.detector else None
                tracker = self.trackers[w.topic] = IncidentTracker(
                    self.detector, threshold=threshold, min_count=cfg.min_count, cooldown_s=cfg.cooldown_s,
                    baseline=cfg.baseline, metric=cfg.metric)
            verdict = tracker.judge(w)
            history = self.verdicts.setdefault(w.topic, [])
            history.append(verdict)
            if self.max_windows is not None and len(history) > self.max_windows:
                del history[: len(history) - self.max_windows]
            if verdict.alert:
                line = verdict.alert_line(self.detector)
                fired.append(line)
                self.alerts.append(line)
                if self.on_alert is not None:
                    self.on_alert(line)
        return fired


def _pending(handle: TextIO) -> bool:
    """Whether more input is waiting on ``handle`` right now (False when it cannot tell)."""
    try:
        ready, _, _ = select.select([handle], [], [], 0)
    except (ValueError, OSError, TypeError):  # no file descriptor (a StringIO): batches fill up instead
        return True
    return bool(ready)


def _rows(lines: Iterable[str], cfg: WatchConfig, counts: dict[str, Any]) -> Iterator[StreamRow]:
    """Parsed rows of JSON lines; bad ones counted in ``counts`` (and too many of them stop the stream)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        counts["total"] += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and counts["total"] == 1 and cfg.time_field not in record:
            found = ", ".join(repr(k) for k in record) or "none"
            raise DataError(f"stdin has no timestamp column '{cfg.time_field}' (watch.time_field). Found: {found}. "
                            "Set watch.time_field to one of them.")
        ts = parse_time(record.get(cfg.time_field)) if isinstance(record, dict) else None
        text = record.get(cfg.text_field) if isinstance(record, dict) else None
        if ts is None or not isinstance(text, str) or not text.strip():
            counts["bad"] += 1
            if len(counts["examples"]) < 3:
                counts["examples"].append(f"line {number}: {line.strip()[:60]!r}")
            if counts["total"] >= _CHECK_AFTER and counts["bad"] / counts["total"] > cfg.max_bad_share:
                raise DataError(f"{counts['bad']} of the first {counts['total']} lines of stdin have no parseable "
                                f"timestamp in '{cfg.time_field}' or no text in '{cfg.text_field}' (e.g. "
                                f"{'; '.join(counts['examples'])}), more than watch.max_bad_share "
                                f"({cfg.max_bad_share:.1%}).")
            continue
        yield StreamRow(ts, text)


def follow(handle: TextIO, watch: LiveWatch) -> dict[str, Any]:
    """Feed JSON lines from ``handle`` to ``watch`` until it ends; returns the row counts."""
    counts: dict[str, Any] = {"total": 0, "bad": 0, "examples": []}
    batch: list[StreamRow] = []
    for row in _rows(iter(handle.readline, ""), watch.cfg, counts):
        batch.append(row)
        if len(batch) >= watch.cfg.batch_size or not _pending(handle):
            watch.feed(batch)
            batch = []
    watch.feed(batch)
    watch.close()
    if counts["bad"]:
        log.warning("stdin: skipped %d of %d rows without a parseable timestamp or a text (%s)", counts["bad"],
                    counts["total"], "; ".join(counts["examples"]))
    if watch.late:
        log.warning("stdin: skipped %d rows that arrived after their window had closed", watch.late)
    return counts
