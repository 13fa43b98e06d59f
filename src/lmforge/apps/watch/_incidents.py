"""From detector scores to alerts: the minimum count, incidents and the cooldown.

A window with fewer than ``min_count`` texts is not judged (a share over 3 texts is noise) and
does not move the baseline. An incident is a run of judged windows whose score exceeds the
threshold; it alerts once, at its first window, unless an alert of the same topic ended less
than ``cooldown_s`` before that window ended. The alert carries the contract's fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmforge.apps.watch._aggregate import WindowStats
from lmforge.apps.watch._registry import get_spike_detector
from lmforge.apps.watch._time import iso

__all__ = ["IncidentTracker", "Verdict", "detect", "sort_alerts"]


@dataclass
class Verdict:
    """What a detector said about one window."""

    window: WindowStats
    metric: str
    baseline: float | None
    score: float | None
    anomalous: bool
    alert: bool
    suppressed: bool = False
    """Anomalous, the start of an incident, but inside the cooldown of the previous alert."""

    def alert_line(self, detector: str) -> dict[str, Any]:
        """The alerts.jsonl line of this window (the issue's contract)."""
        w = self.window
        return {"time": iso(w.end), "window_start": iso(w.start), "topic": w.topic, "detector": detector,
                "metric": self.metric, "value": w.value(self.metric), "baseline": self.baseline, "score": self.score, "n": w.n}


class IncidentTracker:
    """One topic's detector with its incident and cooldown state, judging windows as they close.

    Replay feeds it a topic's windows in one go (:func:`detect`); a live stream feeds it each
    window when the window ends (:class:`~lmforge.apps.watch._live.LiveWatch`).
    """

    def __init__(self, detector: str, *, threshold: float | None, min_count: int, cooldown_s: float,
                 baseline: int, metric: str = "negative_share") -> None:
        self.spike = get_spike_detector(detector, threshold=threshold, baseline=baseline, metric=metric)
        self.limit = self.spike.threshold if threshold is None else threshold  # type: ignore[attr-defined]
        self.min_count, self.cooldown_s, self.metric = min_count, cooldown_s, metric
        self.active = False
        self.last_alert_end: float | None = None

    def judge(self, w: WindowStats) -> Verdict:
        """The verdict on the next window of this topic (windows must come in time order)."""
        if w.n < self.min_count:
            return Verdict(w, self.metric, None, None, anomalous=False, alert=False)
        base, score = self.spike.step(w.value(self.metric), w.n)
        anomalous = score is not None and score > self.limit
        verdict = Verdict(w, self.metric, base, score, anomalous=anomalous, alert=False)
        if anomalous and not self.active:
            if self.last_alert_end is None or w.end - self.last_alert_end >= self.cooldown_s:
                verdict.alert, self.last_alert_end = True, w.end
            else:
                verdict.suppressed = True
        self.active = anomalous
        return verdict


def detect(windows: Sequence[WindowStats], detector: str, *, threshold: float | None, min_count: int,
           cooldown_s: float, baseline: int, metric: str = "negative_share") -> list[Verdict]:
    """Run a fresh ``detector`` over one topic's windows (time order); one verdict per window."""
    tracker = IncidentTracker(detector, threshold=threshold, min_count=min_count, cooldown_s=cooldown_s,
                              baseline=baseline, metric=metric)
    return [tracker.judge(w) for w in windows]


def sort_alerts(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alert lines in time order (window end, then topic and detector, so the order is total)."""
    return sorted(lines, key=lambda a: (a["time"], a["topic"], a["detector"]))
