"""`lmforge watch eval`: how good are the alerts? Precision, recall and detection delay per detector.

The stream is scored once; every registered detector then judges the same windows (the spec's own
detector at ``watch.threshold``, the others at their defaults). An alert is true when its window
overlaps a labelled incident ``{topic, start, end}`` of its topic (an incident of topic ``all``
matches any topic); an incident is detected when a true alert overlaps it. The delay is the time
from the incident's start to the end of the first alert window that overlaps it (an alert is known
when its window closes), also in windows: 1.0 means "at the end of the window the surge began in".
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.apps.watch._aggregate import ALL_TOPICS, aggregate
from lmforge.apps.watch._inject import inject_surges
from lmforge.apps.watch._registry import SPIKE_DETECTORS, get_spike_detector
from lmforge.apps.watch._replay import alert_lines, detect_all
from lmforge.apps.watch._score import Scorer
from lmforge.apps.watch._sources import read_stream
from lmforge.apps.watch._time import parse_time
from lmforge.config import Spec, WatchConfig
from lmforge.errors import DataError

__all__ = ["evaluate_watch", "read_incidents", "score_alerts"]


def read_incidents(path: str | Path) -> list[dict[str, Any]]:
    """Labelled incidents from a JSONL file (or one JSON list): ``{topic, start, end}`` each.

    Raises:
        DataError: missing file, a line that is not an object, or a start/end that does not parse
            or ends before it starts.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Incidents file not found: {p}. Give one JSON object per line: {{topic, start, end}}.")
    text = p.read_text(encoding="utf-8")
    try:
        items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()
                                                                           if x.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} is not JSON lines: {exc}") from None
    out = []
    for number, item in enumerate(items, 1):
        start = parse_time(item.get("start")) if isinstance(item, dict) else None
        end = parse_time(item.get("end")) if isinstance(item, dict) else None
        if start is None or end is None or end <= start:
            raise DataError(f"{p} incident {number} needs a start before its end (ISO-8601 or day-first dates), "
                            f"got {item!r}.")
        out.append({"topic": str(item.get("topic") or ALL_TOPICS), "start": start, "end": end})
    return out


def _overlaps(alert: dict[str, Any], incident: dict[str, Any]) -> bool:
    if incident["topic"] != ALL_TOPICS and incident["topic"] != alert["topic"]:
        return False
    return bool(parse_time(alert["window_start"]) < incident["end"] and parse_time(alert["time"]) > incident["start"])  # type: ignore[operator]


def score_alerts(alerts: Sequence[dict[str, Any]], incidents: Sequence[dict[str, Any]],
                 window_s: float) -> dict[str, Any]:
    """Precision, recall and delays of ``alerts`` against ``incidents`` (times in epoch seconds)."""
    true_alerts = [a for a in alerts if any(_overlaps(a, i) for i in incidents)]
    delays = []
    for incident in incidents:
        ends = [parse_time(a["time"]) for a in alerts if _overlaps(a, incident)]
        if ends:
            delays.append(min(e for e in ends if e is not None) - incident["start"])
    n_alerts, n_incidents = len(alerts), len(incidents)
    return {
        "alerts": n_alerts, "true_alerts": len(true_alerts), "false_alerts": n_alerts - len(true_alerts),
        "incidents": n_incidents, "detected": len(delays),
        "precision": len(true_alerts) / n_alerts if n_alerts else None,
        "recall": len(delays) / n_incidents if n_incidents else None,
        "mean_delay_s": sum(delays) / len(delays) if delays else None,
        "mean_delay_windows": sum(delays) / len(delays) / window_s if delays else None,
        "max_delay_windows": max(delays) / window_s if delays else None,
        "within_one_window": sum(d <= window_s + 1e-6 for d in delays) / n_incidents if n_incidents else None,
    }


def evaluate_watch(spec: Spec | WatchConfig, input_path: str | Path, *, incidents: str | Path | None = None,
                   inject: str | Path | None = None, surges: int = 20, seed: int = 0,
                   detectors: Sequence[str] | None = None, scorer: Scorer | None = None,
                   public_key: str | Path | None = None, allow_unsigned: bool = False) -> dict[str, Any]:
    """Score every detector's alerts on a stream against labelled or injected incidents.

    Args:
        spec: the spec (its ``watch`` section) or the section itself.
        input_path: the stream (JSONL/CSV, ``-`` for stdin).
        incidents: a file of labelled incidents; or
        inject: a JSONL/CSV pool of negative texts (``watch.text_field``) planted as ``surges``
            seeded surges (``seed``) into the stream, which should be calm.
        detectors: which detectors to compare (default: every registered one).

    Raises:
        ConfigError, DataError: as :func:`replay`; neither or both of ``incidents`` and ``inject``.
    """
    cfg = spec.watch if isinstance(spec, Spec) else spec
    if (incidents is None) == (inject is None):
        raise DataError("lmforge watch eval needs either --incidents FILE (labelled incidents) or --inject POOL "
                        "(negative texts to plant as surges), not both and not neither.")
    names = list(detectors or sorted(SPIKE_DETECTORS))
    for name in names:
        get_spike_detector(name)
    stream = read_stream(input_path, time_field=cfg.time_field, text_field=cfg.text_field,
                         max_bad_share=cfg.max_bad_share)
    rows, labelled = stream.rows, []
    if inject is not None:
        pool = _read_pool(inject, cfg.text_field)
        rows, planted = inject_surges(stream.rows, pool, surges=surges, seed=seed, window_s=cfg.window_s,
                                      warmup=cfg.baseline + 2, min_added=cfg.min_count)
        labelled = [{"topic": i["topic"], "start": parse_time(i["start"]), "end": parse_time(i["end"])} for i in planted]
    else:
        labelled = read_incidents(incidents)  # type: ignore[arg-type]
    scorer = scorer or Scorer.from_config(cfg, public_key=public_key, allow_unsigned=allow_unsigned)
    scored = scorer.score([r.text for r in rows])
    windows = aggregate([r.time for r in rows], list(scored.negative), list(scored.negative_proba), scored.topics,
                        cfg.window_s)
    results = {}
    for name in names:
        verdicts = detect_all(windows, cfg, name, cfg.threshold if name == cfg.detector else None)
        results[name] = score_alerts(alert_lines(verdicts, name), labelled, cfg.window_s)
    return {"stream": stream.source, "texts": len(rows), "injected": len(rows) - len(stream.rows),
            "incidents": len(labelled), "window": cfg.window, "metric": cfg.metric,
            "texts_per_s": round(scored.texts_per_s, 1), "detectors": results}


def _read_pool(path: str | Path, text_field: str) -> list[str]:
    """The texts of a pool file (JSONL or CSV with ``text_field``); no timestamps needed.

    Raises:
        DataError: the file is missing, unreadable, or holds no text in ``text_field``.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Pool file not found: {p}. Give a JSONL or CSV file with a '{text_field}' column.")
    try:
        with p.open(encoding="utf-8-sig", newline="") as fh:
            if p.suffix.lower() in (".csv", ".tsv"):
                records: list[Any] = list(csv.DictReader(fh))
            else:
                records = [json.loads(line) for line in fh if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the pool {p}: {exc}") from None
    values = [r.get(text_field) for r in records if isinstance(r, dict)]
    texts = [t for t in values if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError(f"{p} has no texts in '{text_field}' to inject.")
    return texts
