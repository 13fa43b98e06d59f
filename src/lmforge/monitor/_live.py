"""In-memory windows of recent predictions per model version, and the metrics computed over them."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Recent", "VersionWindow", "Windows", "classification_metrics", "window_stats"]


@dataclass(frozen=True)
class Recent:
    """What a drift check and the window metrics need of one prediction (the text in clear, memory only)."""

    ts: float
    label: str
    confidence: float
    latency_ms: float
    text: str
    scores: dict[str, float]


@dataclass
class VersionWindow:
    """The last predictions of one model version, and counters since the process started."""

    maxlen: int
    recent: deque[Recent] = field(init=False)
    total: int = 0
    by_label: Counter[str] = field(default_factory=Counter)
    since_drift: int = 0

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.maxlen)

    def add(self, item: Recent) -> None:
        self.recent.append(item)
        self.total += 1
        self.by_label[item.label] += 1
        self.since_drift += 1

    def last(self, n: int) -> list[Recent]:
        items = list(self.recent)
        return items[-n:] if n < len(items) else items


class Windows:
    """Thread-safe map of (model, version) -> :class:`VersionWindow`, plus a global request-outcome window."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._by_key: dict[tuple[str, str], VersionWindow] = {}
        self._outcomes: deque[bool] = deque(maxlen=maxlen)  # True: an error
        self._lock = threading.Lock()

    def add(self, model: str, version: str, item: Recent) -> VersionWindow:
        with self._lock:
            win = self._by_key.get((model, version))
            if win is None:
                win = self._by_key[(model, version)] = VersionWindow(self.maxlen)
            win.add(item)
            self._outcomes.append(False)
            return win

    def add_error(self) -> None:
        with self._lock:
            self._outcomes.append(True)

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._by_key)

    def snapshot(self, model: str, version: str, n: int | None = None) -> list[Recent]:
        with self._lock:
            win = self._by_key.get((model, version))
            if win is None:
                return []
            return win.last(n or self.maxlen)

    def get(self, model: str, version: str) -> VersionWindow | None:
        with self._lock:
            return self._by_key.get((model, version))

    def counters(self) -> dict[tuple[str, str], dict[str, int]]:
        with self._lock:
            return {k: dict(w.by_label) for k, w in self._by_key.items()}

    def error_rate(self, window: int) -> tuple[float | None, int]:
        with self._lock:
            items = list(self._outcomes)[-window:]
        return (sum(items) / len(items) if items else None), len(items)


def classification_metrics(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``{"n", "accuracy", "macro_f1"}`` of ``(predicted, true)`` pairs.

    Macro-F1 averages over the labels present in the pairs (true or predicted), as
    scikit-learn does: a label no one sent nor predicted in the window says nothing.
    Both are None when there are no pairs.
    """
    n = len(pairs)
    if n == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    pred = np.array([p for p, _ in pairs], dtype=object)
    true = np.array([t for _, t in pairs], dtype=object)
    f1s = []
    for label in sorted(set(pred) | set(true)):
        tp = int(np.sum((pred == label) & (true == label)))
        fp = int(np.sum((pred == label) & (true != label)))
        fn = int(np.sum((pred != label) & (true == label)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"n": n, "accuracy": float(np.mean(pred == true)), "macro_f1": float(np.mean(f1s))}


def window_stats(items: Sequence[Recent]) -> dict[str, Any]:
    """Latency percentiles, mean confidence and label mix of a list of recent predictions."""
    if not items:
        return {
            "n": 0,
            "latency_mean_ms": None,
            "latency_p50_ms": None,
            "latency_p95_ms": None,
            "mean_confidence": None,
            "label_share": {},
        }
    lat = np.array([r.latency_ms for r in items], dtype=np.float64)
    counts = Counter(r.label for r in items)
    return {
        "n": len(items),
        "latency_mean_ms": float(lat.mean()),
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
        "mean_confidence": float(np.mean([r.confidence for r in items])),
        "label_share": {k: v / len(items) for k, v in sorted(counts.items())},
    }
