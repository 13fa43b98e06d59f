"""The financial sentiment watch: dated texts scored for sentiment (and topic), windowed, spike alerts.

- :func:`replay`: ``lmforge watch replay`` (alerts.jsonl, timeline.csv, report.html).
- :func:`evaluate_watch`: ``lmforge watch eval``: alert precision, recall and detection delay of
  every detector against labelled incidents; :func:`inject_surges` plants seeded surges of
  negative texts into a calm stream to make such incidents; :func:`calibrate_thresholds` gives each
  detector the threshold that keeps a calm stream's alerts under a false-alarm rate.
- Spike detectors by name (:data:`SPIKE_DETECTORS`, :func:`register_spike_detector`):
  ``zscore``, ``ewma``, ``cusum``, ``page-hinkley``, ``fixed``.
- Stream sources (:func:`read_stream`) and timestamps (:func:`parse_time`).

- :class:`LiveWatch`: the same windows and detectors over a live, time-ordered stream (``--input -``,
  :func:`follow`), alerting as each window closes.
- :class:`WatchExtension`: ``lmforge watch serve SPEC`` (or ``lmforge serve SPEC``, through
  :func:`serving`): ``POST /v1/ingest`` feeds a :class:`LiveWatch` on the server, ``GET /v1/watch``
  is its timeline and ``GET /watch`` its page.
"""

from lmforge.apps.watch import _detectors  # noqa: F401  (registers the shipped detectors)
from lmforge.apps.watch._aggregate import ALL_TOPICS, WindowStats, aggregate
from lmforge.apps.watch._calibrate import calibrate_thresholds, calibrate_watch
from lmforge.apps.watch._eval import evaluate_watch, read_incidents, score_alerts
from lmforge.apps.watch._incidents import Verdict, detect
from lmforge.apps.watch._inject import calm_stream, inject_surges
from lmforge.apps.watch._live import LiveWatch, follow
from lmforge.apps.watch._registry import (
    SPIKE_DETECTORS,
    SpikeDetector,
    get_spike_detector,
    register_spike_detector,
)
from lmforge.apps.watch._replay import ReplayResult, alert_lines, deliver_alerts, detect_all, replay
from lmforge.apps.watch._score import Scored, Scorer
from lmforge.apps.watch._server import WatchExtension, parse_items, serving, watch_served
from lmforge.apps.watch._sources import Stream, StreamRow, read_stream
from lmforge.apps.watch._time import iso, parse_time, window_start

__all__ = [
    "ALL_TOPICS",
    "SPIKE_DETECTORS",
    "LiveWatch",
    "ReplayResult",
    "Scored",
    "Scorer",
    "SpikeDetector",
    "Stream",
    "StreamRow",
    "Verdict",
    "WatchExtension",
    "WindowStats",
    "aggregate",
    "alert_lines",
    "calibrate_thresholds",
    "calibrate_watch",
    "calm_stream",
    "deliver_alerts",
    "detect",
    "detect_all",
    "evaluate_watch",
    "follow",
    "get_spike_detector",
    "inject_surges",
    "iso",
    "parse_items",
    "parse_time",
    "read_incidents",
    "read_stream",
    "register_spike_detector",
    "replay",
    "score_alerts",
    "serving",
    "watch_served",
    "window_start",
]
