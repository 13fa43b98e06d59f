"""`lmforge watch replay`: a dated stream scored, windowed per topic, watched by a spike detector.

The stream is read (:func:`read_stream`), scored once (:class:`Scorer`), cut into windows per
topic (:func:`aggregate`) and judged window by window (:func:`detect`). Alerts are written to
``alerts.jsonl`` in time order and go through the monitor's alert actions: a ``log`` record here,
a ``webhook`` POST by the monitor's :class:`~lmforge.monitor.WebhookNotifier` (its background
thread and retry), one event per incident.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lmforge.apps.watch._aggregate import WindowStats, aggregate
from lmforge.apps.watch._incidents import Verdict, detect, sort_alerts
from lmforge.apps.watch._live import LiveWatch, follow
from lmforge.apps.watch._registry import get_spike_detector
from lmforge.apps.watch._report import write_report, write_timeline
from lmforge.apps.watch._score import Scorer
from lmforge.apps.watch._sources import read_stream
from lmforge.config import Spec, WatchConfig
from lmforge.monitor import AlertRule, WebhookNotifier
from lmforge.rundir import atomic_write_text

__all__ = ["ReplayResult", "alert_lines", "alert_rule", "deliver_alerts", "detect_all", "log_alert", "replay",
           "result_view", "webhook_event"]

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """What a replay found and wrote."""

    alerts: list[dict[str, Any]]
    verdicts: dict[str, list[Verdict]]
    source: str
    texts: list[str]
    negative_proba: Sequence[float]
    negative: Sequence[bool]
    total: int
    """Rows read, skipped ones included."""
    skipped: int
    """Rows without a parseable timestamp or a text, or (stdin) that came after their window closed."""
    seconds: float
    """Time spent scoring."""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        rate = len(self.texts) / self.seconds if self.seconds > 0 else 0.0
        return {"texts": len(self.texts), "skipped": self.skipped, "topics": len(self.verdicts),
                "windows": sum(len(v) for v in self.verdicts.values()), "alerts": len(self.alerts),
                "texts_per_s": round(rate, 1), "files": self.files}


def detect_all(windows: dict[str, list[WindowStats]], cfg: WatchConfig,
               detector: str | None = None, threshold: float | None = None) -> dict[str, list[Verdict]]:
    """Every topic's windows judged by ``detector`` (default ``cfg.detector`` at ``cfg.threshold``)."""
    name = detector or cfg.detector
    limit = cfg.threshold if detector is None else threshold
    return {topic: detect(ws, name, threshold=limit, min_count=cfg.min_count, cooldown_s=cfg.cooldown_s,
                          baseline=cfg.baseline, metric=cfg.metric)
            for topic, ws in sorted(windows.items())}


def alert_lines(verdicts: dict[str, list[Verdict]], detector: str) -> list[dict[str, Any]]:
    """The alert lines of every topic, in time order."""
    return sort_alerts([v.alert_line(detector) for vs in verdicts.values() for v in vs if v.alert])


def log_alert(a: dict[str, Any]) -> None:
    """The ``log`` action: one WARNING record naming the topic, the window and the numbers."""
    log.warning("WATCH ALERT %s: %s %.3f over %d texts (baseline %s, %s score %.2f) in the "
                "window %s .. %s", a["topic"], a["metric"], a["value"], a["n"],
                "n/a" if a["baseline"] is None else f"{a['baseline']:.3f}", a["detector"],
                a["score"], a["window_start"], a["time"])


def alert_rule(cfg: WatchConfig) -> AlertRule:
    """The monitor alert rule a watch alert is delivered under (its ``webhook_url``, named after the detector)."""
    limit = cfg.threshold if cfg.threshold is not None else get_spike_detector(cfg.detector).threshold  # type: ignore[attr-defined]
    return AlertRule(metric=f"label_share:{cfg.negative_label}", op=">", threshold=float(limit),
                     actions=["webhook"], webhook_url=cfg.webhook_url, name=f"watch {cfg.detector}")


def webhook_event(alert: dict[str, Any], rule: AlertRule) -> dict[str, Any]:
    """The body the webhook receives: the alert line and the monitor's event fields."""
    return {**alert, "status": "firing", "rule": rule.name, "actions": ["webhook"]}


def deliver_alerts(alerts: Sequence[dict[str, Any]], cfg: WatchConfig) -> WebhookNotifier | None:
    """Send each alert through ``cfg.actions``: a WARNING log record, and/or a webhook POST (waits
    until every POST was tried). Returns the notifier (its ``delivered``/``failed`` counts), if any."""
    if "log" in cfg.actions:
        for a in alerts:
            log_alert(a)
    if "webhook" not in cfg.actions or not alerts:
        return None
    rule = alert_rule(cfg)
    notifier = WebhookNotifier()
    notifier.start()
    try:
        for a in alerts:
            notifier.submit(webhook_event(a, rule), rule)
        notifier.flush(timeout=max(10.0, 2 * rule.timeout_s * len(alerts)))
    finally:
        notifier.close()
    return notifier


def replay(spec: Spec | WatchConfig, input_path: str | Path, output: str | Path, report_dir: str | Path | None = None,
           *, scorer: Scorer | None = None, public_key: str | Path | None = None, allow_unsigned: bool = False,
           stdin: TextIO | None = None) -> ReplayResult:
    """Replay a stream through the watch and write its alerts (and, with ``report_dir``, the
    timeline and the HTML report).

    Args:
        spec: the spec (its ``watch`` section is used) or the section itself.
        input_path: a JSONL or CSV file, or ``-`` for JSON lines on stdin, watched live: each alert
            is written and delivered when its window closes (rows must come in time order).
        output: the alerts.jsonl to write (one line per alert, time order).
        report_dir: where ``timeline.csv`` and ``report.html`` go (created), or None.
        scorer: the loaded models (default: verify and load the spec's runs).
        public_key, allow_unsigned: how the runs are verified (as ``lmforge predict``).

    Raises:
        ConfigError: no sentiment run, an unknown detector, or a negative label the run lacks.
        DataError: no timestamp or text column, or too many rows without a parseable timestamp.
    """
    cfg = spec.watch if isinstance(spec, Spec) else spec
    get_spike_detector(cfg.detector)  # an unknown name fails before any model loads
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if str(input_path) == "-":
        result = _follow(cfg, out, scorer or Scorer.from_config(cfg, public_key=public_key,
                                                                allow_unsigned=allow_unsigned), stdin or sys.stdin)
    else:
        stream = read_stream(input_path, time_field=cfg.time_field, text_field=cfg.text_field,
                             max_bad_share=cfg.max_bad_share)
        scorer = scorer or Scorer.from_config(cfg, public_key=public_key, allow_unsigned=allow_unsigned)
        scored = scorer.score(stream.texts)
        windows = aggregate(stream.times, list(scored.negative), list(scored.negative_proba), scored.topics,
                            cfg.window_s)
        verdicts = detect_all(windows, cfg)
        alerts = alert_lines(verdicts, cfg.detector)
        atomic_write_text(out, "".join(json.dumps(a) + "\n" for a in alerts))
        result = ReplayResult(alerts, verdicts, stream.source, stream.texts, scored.negative_proba.tolist(),
                              scored.negative.tolist(), stream.total, stream.bad, scored.seconds)
        deliver_alerts(alerts, cfg)
    result.files["alerts"] = str(out)
    if report_dir is not None:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        result.files["timeline"] = str(write_timeline(folder / "timeline.csv", result.verdicts))
        result.files["report"] = str(write_report(folder / "report.html", result_view(result, cfg)))
    return result


def _follow(cfg: WatchConfig, out: Path, scorer: Scorer, stdin: TextIO) -> ReplayResult:
    """The live path: alerts written (and delivered) one by one as their windows close."""
    with out.open("w", encoding="utf-8") as fh:

        def on_alert(line: dict[str, Any]) -> None:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            deliver_alerts([line], cfg)

        watch = LiveWatch(cfg, scorer, on_alert)
        counts = follow(stdin, watch)
    return ReplayResult(watch.alerts, watch.verdicts, "stdin", watch.texts, watch.negative_proba, watch.negative,
                        counts["total"], counts["bad"] + watch.late, watch.seconds)


def result_view(result: ReplayResult, cfg: WatchConfig) -> dict[str, Any]:
    """What the HTML report shows of a replay."""
    return {"source": result.source, "detector": cfg.detector, "metric": cfg.metric, "window": cfg.window,
            "negative_label": cfg.negative_label, "min_count": cfg.min_count, "summary": result.summary,
            "verdicts": result.verdicts, "alerts": result.alerts, "texts": result.texts,
            "negative_proba": result.negative_proba, "negative": result.negative}
