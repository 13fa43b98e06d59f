"""`lmforge watch serve`: the watch live on the server, behind its keys and admission control.

A spec with a ``watch:`` section is served (``lmforge watch serve SPEC``, or ``lmforge serve SPEC``
through :func:`serving`) as the sentiment run (``Served.source``, so ``/v1/predict`` answers with
it too) plus :class:`WatchExtension`'s routes (``_routes.py``): ``POST /v1/ingest`` scores a batch
of dated texts in one model call and feeds it to a :class:`LiveWatch`; a window closes when a row of
a later window arrives, and its alert goes out through the watch's actions (a ``log`` record, a
``webhook`` POST by one long-lived monitor :class:`WebhookNotifier`) at that moment, and back in the
response of the batch that closed it. ``GET /v1/watch`` is the per-topic timeline as JSON and
``GET /watch`` the same as a page with the replay report's charts (``_page.py``).

State is in memory: the open windows, each topic's detector and baseline, and the last
:data:`MAX_WINDOWS` closed windows per topic. A restart starts with empty baselines (the first
``watch.baseline`` judged windows of each topic cannot alert again) and forgets the timeline;
the alerts already delivered stay delivered (and in the log).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lmforge.apps._serving import Served
from lmforge.apps.watch._aggregate import WindowStats
from lmforge.apps.watch._incidents import Verdict
from lmforge.apps.watch._live import LiveWatch
from lmforge.apps.watch._registry import get_spike_detector
from lmforge.apps.watch._replay import alert_rule, log_alert, webhook_event
from lmforge.apps.watch._score import Scorer
from lmforge.apps.watch._sources import StreamRow
from lmforge.apps.watch._time import iso, parse_time
from lmforge.config import WatchConfig, load_spec
from lmforge.errors import ConfigError
from lmforge.monitor import WebhookNotifier
from lmforge.serve import ExtensionHost, ServeContext

__all__ = ["MAX_TOPICS", "MAX_WINDOWS", "WatchExtension", "parse_items", "serving", "watch_served"]

log = logging.getLogger(__name__)

MAX_WINDOWS = 500
"""Closed windows kept per topic for ``/v1/watch`` and the page (a detector keeps its own state)."""
MAX_TOPIC_CHARS = 100
MAX_TOPICS = 1000
"""Topics one watch keeps (a detector each); a row that would add one more is malformed."""
_PROBLEMS_SHOWN = 3
_RECENT_ALERTS = 100


def parse_items(items: Sequence[Any], cfg: WatchConfig, max_chars: int
                ) -> tuple[list[StreamRow], list[str | None], list[str]]:
    """The rows of an ingest request, the topic given with each (or None), and why the others are malformed.

    An item is an object with a timestamp (``watch.time_field``, else ``time``) in a form
    :func:`parse_time` reads, a non-empty text (``watch.text_field``, else ``text``) of at most
    ``max_chars`` characters, and optionally a ``topic`` string (used instead of the topic run's).
    """
    rows: list[StreamRow] = []
    topics: list[str | None] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"items[{i}] is not an object")
            continue
        when = parse_time(item.get(cfg.time_field, item.get("time")))
        text = item.get(cfg.text_field, item.get("text"))
        topic = item.get("topic")
        if when is None:
            problems.append(f"items[{i}] has no parseable timestamp in '{cfg.time_field}'")
        elif not isinstance(text, str) or not text.strip():
            problems.append(f"items[{i}] has no text in '{cfg.text_field}'")
        elif len(text) > max_chars:
            problems.append(f"items[{i}] has a text of {len(text)} characters (limits.max_text_chars: {max_chars})")
        elif topic is not None and (not isinstance(topic, str) or not topic.strip() or len(topic) > MAX_TOPIC_CHARS):
            problems.append(f"items[{i}] has a topic that is not a string of 1 to {MAX_TOPIC_CHARS} characters")
        else:
            rows.append(StreamRow(when, text))
            topics.append(topic.strip() if isinstance(topic, str) else None)
    return rows, topics, problems


def _closed(v: Verdict) -> dict[str, Any]:
    w = v.window
    return {"window_start": iso(w.start), "window_end": iso(w.end), "n": w.n, "negative": w.negative,
            "negative_share": w.share, "mean_negative_score": w.mean_score, "baseline": v.baseline,
            "score": v.score, "anomalous": v.anomalous, "alert": v.alert, "suppressed": v.suppressed}


def _open(w: WindowStats) -> dict[str, Any]:
    return {"window_start": iso(w.start), "window_end": iso(w.end), "n": w.n, "negative": w.negative,
            "negative_share": w.share, "mean_negative_score": w.mean_score}


class WatchExtension:
    """The live watch as a server extension (see the module docstring).

    Args:
        cfg: the spec's watch section.
        source: what the page names as the watch (the spec's path).
        scorer: the loaded models; default: :meth:`start` verifies and loads the section's runs
            with the server's trust policy (``--public-key``, ``--allow-unsigned``).
    """

    name = "watch"

    def __init__(self, cfg: WatchConfig, source: str = "", scorer: Scorer | None = None) -> None:
        self.cfg, self.source, self._scorer = cfg, source, scorer
        self.watch: LiveWatch | None = None
        self.notifier: WebhookNotifier | None = None
        self.malformed = 0
        self.batches = 0
        self._lock = threading.Lock()  # LiveWatch is not thread-safe; batches are added one at a time

    def router(self, context: ServeContext) -> Any:
        from lmforge.apps.watch._routes import watch_router  # FastAPI: the serve extra

        return watch_router(self, context)

    def start(self, host: ExtensionHost) -> None:
        scorer = self._scorer or Scorer.from_config(self.cfg, public_key=host.settings.public_key,
                                                    allow_unsigned=host.settings.allow_unsigned)
        if "webhook" in self.cfg.actions:
            self.rule = alert_rule(self.cfg)
            self.notifier = WebhookNotifier()
            self.notifier.start()
        self.watch = LiveWatch(self.cfg, scorer, self._deliver, keep_texts=False, max_windows=MAX_WINDOWS)
        log.info("watch %s: %s over %s windows, detector %s, actions: %s", self.source or "(spec)", self.cfg.metric,
                 self.cfg.window, self.cfg.detector, ", ".join(self.cfg.actions) or "none")

    def ready(self) -> bool:
        return self.watch is not None

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.flush()
            self.notifier.close()

    def _deliver(self, line: dict[str, Any]) -> None:
        """The watch's actions for one alert, as its window closes (the POST is queued, never awaited)."""
        if "log" in self.cfg.actions:
            log_alert(line)
        if self.notifier is not None:
            self.notifier.submit(webhook_event(line, self.rule), self.rule)

    def ingest(self, items: Sequence[Any], max_chars: int) -> dict[str, Any]:
        """Score one batch (one model call, outside the lock) and add it; what ``POST /v1/ingest`` answers."""
        watch = self.watch
        if watch is None:
            raise RuntimeError("the watch extension was not started")
        rows, topics, problems = parse_items(items, self.cfg, max_chars)
        rows, topics = self._bounded_topics(watch, rows, topics, problems)
        scored = watch.scorer.score([r.text for r in rows]) if rows else None
        with self._lock:
            late_before = watch.late
            alerts = watch.add(rows, scored, topics) if scored is not None else []
            late = watch.late - late_before
            self.malformed += len(problems)
            self.batches += 1
        return {"accepted": len(rows) - late, "late": late, "malformed": len(problems),
                "problems": problems[:_PROBLEMS_SHOWN], "alerts": alerts}

    def _bounded_topics(self, watch: LiveWatch, rows: list[StreamRow], topics: list[str | None],
                        problems: list[str]) -> tuple[list[StreamRow], list[str | None]]:
        """Rows whose given topic would be one beyond :data:`MAX_TOPICS` are malformed: a client
        cannot grow the server's memory with made-up topics."""
        with self._lock:
            known = set(watch.trackers) | set(watch.open)
        kept_rows, kept_topics = [], []
        for row, topic in zip(rows, topics, strict=True):
            if topic is not None and topic not in known:
                if len(known) >= MAX_TOPICS:
                    problems.append(f"topic {topic[:40]!r} would be one more than the {MAX_TOPICS} a watch keeps")
                    continue
                known.add(topic)
            kept_rows.append(row)
            kept_topics.append(topic)
        return kept_rows, kept_topics

    def snapshot(self) -> tuple[dict[str, Any], dict[str, list[Verdict]]]:
        """The timeline (``GET /v1/watch``) and each topic's closed verdicts (for the page's charts)."""
        watch = self.watch
        if watch is None:
            raise RuntimeError("the watch extension was not started")
        with self._lock:
            verdicts = {t: list(vs) for t, vs in watch.verdicts.items()}
            open_windows = dict(watch.open)
            topics = {}
            for topic in sorted(set(verdicts) | set(open_windows)):
                closed = verdicts.get(topic, [])
                cell = open_windows.get(topic)
                topics[topic] = {"windows": [_closed(v) for v in closed], "open": None if cell is None else _open(cell),
                                 "alerts": sum(v.alert for v in closed)}
            cfg = self.cfg
            view = {"source": self.source, "window": cfg.window, "detector": cfg.detector, "metric": cfg.metric,
                    "negative_label": cfg.negative_label, "min_count": cfg.min_count,
                    "rows": {"accepted": watch.accepted, "late": watch.late, "malformed": self.malformed},
                    "batches": self.batches, "newest_window_start": None if watch.newest is None else iso(watch.newest),
                    "topics": topics, "alerts": watch.alerts[-_RECENT_ALERTS:]}
        return view, verdicts


def watch_served(spec_path: str | Path, overrides: Sequence[str] = ()) -> Served:
    """What ``lmforge watch serve SPEC`` serves: the sentiment run and the watch's routes.

    Raises:
        ConfigError: the spec has no ``watch.sentiment_run``, or names an unknown detector.
    """
    spec = load_spec(spec_path, list(overrides))
    cfg = spec.watch
    if not cfg.sentiment_run:
        raise ConfigError(f"{spec_path}: watch.sentiment_run is required to serve the watch: the run directory of "
                          "a sentiment classifier.")
    get_spike_detector(cfg.detector)  # an unknown name fails before the server starts
    return Served(extension=WatchExtension(cfg, source=str(spec_path)), source=Path(cfg.sentiment_run))


def serving(path: Path) -> Served | None:
    """``lmforge serve`` on a YAML spec with a ``watch:`` section serves the watch; anything else is not the watch's."""
    if not path.is_file() or path.suffix.lower() not in (".yaml", ".yml"):
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("watch"), dict):
        return None
    return watch_served(path)
