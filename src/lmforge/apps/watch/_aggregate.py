"""Windows per topic: count, negative count and share, mean negative probability.

A scored stream is cut into fixed windows (aligned as :data:`~lmforge.apps.watch._time.WINDOW_ANCHOR`
says); each topic gets the windows that hold at least one of its texts, in time order. Windows
without texts are left out: the detectors skip windows under ``min_count`` anyway, and a stream
of twenty years in hourly windows would otherwise be 175,000 empty rows per topic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from lmforge.apps.watch._time import window_start

__all__ = ["ALL_TOPICS", "WindowStats", "aggregate"]

ALL_TOPICS = "all"
"""The topic of every text when the watch has no topic run."""


@dataclass
class WindowStats:
    """One window of one topic."""

    start: float
    end: float
    topic: str
    n: int = 0
    negative: int = 0
    score_sum: float = 0.0
    rows: list[int] = field(default_factory=list)
    """Indices of the stream rows in this window (for the report's top negative texts)."""

    @property
    def share(self) -> float:
        """Negative share: texts predicted as the negative label / texts."""
        return self.negative / self.n if self.n else 0.0

    @property
    def mean_score(self) -> float:
        """Mean probability of the negative label."""
        return self.score_sum / self.n if self.n else 0.0

    def value(self, metric: str) -> float:
        """The window's ``negative_share``, ``negative_count`` or ``mean_score``."""
        return float(self.negative) if metric == "negative_count" else self.mean_score if metric == "mean_score" \
            else self.share


def aggregate(times: Sequence[float], negative: Sequence[bool], scores: Sequence[float], topics: Sequence[str],
              window_s: float) -> dict[str, list[WindowStats]]:
    """Topic -> its non-empty windows in time order."""
    cells: dict[tuple[str, float], WindowStats] = {}
    for i, (ts, neg, score, topic) in enumerate(zip(times, negative, scores, topics, strict=True)):
        start = window_start(ts, window_s)
        cell = cells.get((topic, start))
        if cell is None:
            cell = cells[(topic, start)] = WindowStats(start=start, end=start + window_s, topic=topic)
        cell.n += 1
        cell.negative += int(bool(neg))
        cell.score_sum += float(score)
        cell.rows.append(i)
    out: dict[str, list[WindowStats]] = defaultdict(list)
    for (topic, _start), cell in sorted(cells.items()):
        out[topic].append(cell)
    return dict(out)
