"""Settings of the monitor and its alert rules: typed dataclasses of plain data, round-trip to YAML."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lmforge.errors import ConfigError
from lmforge.monitor._registry import detector_problems

__all__ = ["ALERT_METRICS", "OPS", "TEXT_POLICIES", "AlertRule", "MonitorSettings"]

TEXT_POLICIES = ("redact", "redact+encrypt", "encrypt", "hash", "none")
"""How the prediction store keeps input texts (see :class:`MonitorSettings.text_policy`)."""

OPS = ("<", "<=", ">", ">=")

ALERT_METRICS = {
    "accuracy": "live accuracy over the last `window` predictions that got feedback",
    "macro_f1": "live macro-F1 over the last `window` predictions that got feedback",
    "estimated_accuracy": "label-free accuracy estimate of the latest drift check",
    "drifted": "number of detectors that flagged drift in the latest drift check",
    "drift:<detector>": "statistic of one detector in the latest drift check (e.g. drift:embedding)",
    "latency_mean_ms": "mean latency of the last `window` predictions",
    "latency_p95_ms": "95th percentile latency of the last `window` predictions",
    "mean_confidence": "mean confidence of the last `window` predictions",
    "label_share:<label>": "share of one predicted label in the last `window` predictions",
    "error_rate": "errors / (errors + predictions) over the last `window` requests",
    "dropped": "predictions dropped because the store queue was full (since start)",
}
_PARAMETRIC = re.compile(r"^(drift|label_share):(.+)$")
ACTIONS = ("log", "webhook")
_IN_MEMORY = re.compile(r"^sqlite(\+\w+)?://(/(:memory:)?)?(\?.*)?$")


def _alert_metric_problem(metric: str) -> str | None:
    if metric in ALERT_METRICS or _PARAMETRIC.match(metric):
        return None
    known = ", ".join(sorted(ALERT_METRICS))
    return f"Unknown alert metric {metric!r}. Available: {known}."


@dataclass
class AlertRule:
    """Fire when ``metric op threshold`` starts to hold; resolve when it stops.

    One incident notifies once when it starts and once when it resolves; a new incident of
    the same rule within ``cooldown_s`` of the last notification is not notified again.
    """

    metric: str
    """What to watch; one of :data:`ALERT_METRICS` (``drift:<detector>``, ``label_share:<label>``)."""
    op: str = "<"
    """Comparison that means trouble: ``<``, ``<=``, ``>``, ``>=``."""
    threshold: float = 0.0
    """Value compared with the metric."""
    window: int = 100
    """Predictions (or labeled predictions, for accuracy) the metric is computed over."""
    cooldown_s: float = 300.0
    """Seconds after a notification during which a new incident of this rule is not notified."""
    actions: list[str] = field(default_factory=lambda: ["log"])
    """``log`` (a WARNING log record) and/or ``webhook`` (POST JSON to ``webhook_url``)."""
    webhook_url: str | None = None
    """http(s) URL the ``webhook`` action posts to."""
    name: str | None = None
    """Name in notifications; default: ``"<metric> <op> <threshold>"``."""
    min_samples: int = 20
    """Below this many samples in the window the metric is undefined and the rule is not evaluated."""
    timeout_s: float = 5.0
    """Timeout of one webhook request (it is retried once)."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        if self.name is None:
            self.name = f"{self.metric} {self.op} {self.threshold:g}"

    def problems(self) -> list[str]:
        """Every problem of this rule (empty when valid)."""
        problems: list[str] = []
        metric_problem = (
            _alert_metric_problem(self.metric) if isinstance(self.metric, str) else "metric must be a string"
        )
        if metric_problem:
            problems.append(metric_problem)
        if self.op not in OPS:
            problems.append(f"Alert op must be one of {', '.join(OPS)}, got {self.op!r}.")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not math.isfinite(self.threshold)
        ):
            problems.append(f"Alert threshold must be a finite number, got {self.threshold!r}.")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            problems.append(f"Alert window must be a positive integer, got {self.window!r}.")
        if not isinstance(self.cooldown_s, int | float) or self.cooldown_s < 0:
            problems.append(f"Alert cooldown_s must be >= 0 seconds, got {self.cooldown_s!r}.")
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            problems.append(f"Alert min_samples must be a positive integer, got {self.min_samples!r}.")
        if not isinstance(self.timeout_s, int | float) or self.timeout_s <= 0:
            problems.append(f"Alert timeout_s must be > 0 seconds, got {self.timeout_s!r}.")
        actions = self.actions if isinstance(self.actions, list) else []
        unknown = [a for a in actions if a not in ACTIONS]
        if not actions or unknown:
            problems.append(
                f"Alert actions must be a non-empty list of {', '.join(ACTIONS)}; got {self.actions!r}."
            )
        if "webhook" in actions:
            url = self.webhook_url or ""
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(
                    f"The webhook action needs webhook_url, an http(s) URL; got {self.webhook_url!r}."
                )
        return problems

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertRule:
        """A rule from a mapping (YAML); unknown keys are an error that lists the known ones."""
        return cls(**_known_fields(cls, data, "alert rule"))


def _known_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"A {what} must be a mapping, got {type(data).__name__}.")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"Unknown {what} key(s) {', '.join(map(repr, unknown))}. Known: {', '.join(names)}."
        )
    return dict(data)


@dataclass
class MonitorSettings:
    """Where predictions go, how texts are kept, what drift and alerts to compute."""

    url: str = "sqlite:///.lmforge/monitor.db"
    """SQLAlchemy URL of the store: SQLite (default, WAL mode) or ``postgresql://...`` (``postgres`` extra)."""
    text_policy: str = "redact"
    """How input texts are stored: ``redact`` (PII masked: ``[EMAIL]``), ``redact+encrypt``
    (masked, then AES-GCM encrypted), ``encrypt`` (encrypted in full), ``hash`` (no text, only
    its hash) or ``none`` (clear text: only for data without personal information)."""
    key_file: str | None = None
    """Key-ring file of the ``encrypt`` policies (default: ``$LMFORGE_ENCRYPTION_KEY``)."""
    reference_run: str | None = None
    """Run directory whose data and model are the drift reference. None: under ``lmforge serve``,
    the run it serves (the default model's active version); elsewhere, no drift checks."""
    reference_state: str | None = None
    """JSON file caching the fitted reference (default: next to the SQLite file, else ``.lmforge/``)."""
    reference_size: int = 1000
    """Most reference examples each detector is fitted on (a seeded random sample)."""
    verify_reference: bool = False
    """Verify ``reference_run`` before its data and model are read (:func:`lmforge.guard.trust_run`,
    with the two settings below), and refuse what was read if a file changed since. Off for a
    monitor used as a library (policy-free, like ``load_predictor``); a server turns it on."""
    reference_public_key: str | None = None
    """The signer's public key to verify ``reference_run`` with (default: ``$LMFORGE_PUBLIC_KEY``,
    else your own)."""
    reference_allow_unsigned: bool = False
    """Accept an unsigned ``reference_run`` (its files are still checked against its manifest)."""
    windows: tuple[int, ...] = (100, 1000)
    """Sliding windows (labeled predictions) of live accuracy and macro-F1 in metrics and summary."""
    alerts: list[AlertRule] = field(default_factory=list)
    """Alert rules."""
    detectors: list[str] | None = None
    """Drift detectors to run (None: every registered one whose dependencies are installed)."""
    detector_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Parameters per detector, e.g. ``{"embedding": {"threshold": 0.6}}``."""
    drift_every: int = 200
    """Recompute drift every N new predictions of a model version."""
    drift_window: int = 500
    """Most recent predictions a drift check looks at."""
    drift_min_interval_s: float = 60.0
    """Least time between two drift checks of a version: under heavy traffic ``drift_every`` alone
    would run them back to back (an embedding check costs a few CPU-seconds)."""
    queue_size: int = 10000
    """Predictions waiting for the writer; beyond this they are dropped (and counted), never blocking."""
    batch_size: int = 500
    """Most predictions the writer inserts in one transaction."""
    flush_interval_s: float = 0.5
    """Longest a prediction waits in the queue before the writer inserts it."""
    retention_days: float | None = 30.0
    """Stored predictions, feedback, drift checks, alert events and errors older than this are
    deleted by the writer (None: kept for ever)."""
    max_rows: int | None = 1_000_000
    """Most predictions kept: beyond it the writer deletes the oldest (None: no cap), so disk use is
    bounded under sustained traffic. Checked every ``prune_interval_s`` and whenever a tenth of it
    was written since the last check."""
    prune_interval_s: float = 60.0
    """How often the writer applies ``retention_days`` and ``max_rows``."""

    def __post_init__(self) -> None:
        if isinstance(self.windows, list):
            self.windows = tuple(self.windows)
        self.alerts = [AlertRule.from_dict(a) if isinstance(a, dict) else a for a in self.alerts]
        problems: list[str] = []
        if not isinstance(self.url, str) or "://" not in self.url:
            problems.append(
                f"monitor url must be a database URL such as sqlite:///monitor.db, got {self.url!r}."
            )
        elif _IN_MEMORY.match(self.url):
            problems.append(
                f"monitor url {self.url!r} is an in-memory SQLite database, which the store-writer process "
                "cannot share; use a file such as sqlite:///monitor.db."
            )
        if self.text_policy not in TEXT_POLICIES:
            problems.append(
                f"monitor text_policy must be one of {', '.join(TEXT_POLICIES)}, got {self.text_policy!r}."
            )
        if not self.windows or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in self.windows
        ):
            problems.append(f"monitor windows must be positive integers, got {self.windows!r}.")
        if self.retention_days is not None and (
            isinstance(self.retention_days, bool) or not isinstance(self.retention_days, int | float)
            or self.retention_days <= 0
        ):
            problems.append(f"monitor retention_days must be a positive number or null, got {self.retention_days!r}.")
        if self.max_rows is not None and (
            isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) or self.max_rows < 1
        ):
            problems.append(f"monitor max_rows must be an integer >= 1 or null, got {self.max_rows!r}.")
        if isinstance(self.prune_interval_s, bool) or not isinstance(self.prune_interval_s, int | float) or (
            self.prune_interval_s <= 0
        ):
            problems.append(f"monitor prune_interval_s must be a positive number, got {self.prune_interval_s!r}.")
        for name in ("reference_size", "drift_every", "drift_window", "queue_size", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"monitor {name} must be a positive integer, got {value!r}.")
        if not isinstance(self.drift_min_interval_s, int | float) or self.drift_min_interval_s < 0:
            problems.append(
                f"monitor drift_min_interval_s must be >= 0 seconds, got {self.drift_min_interval_s!r}."
            )
        if not isinstance(self.flush_interval_s, int | float) or self.flush_interval_s <= 0:
            problems.append(f"monitor flush_interval_s must be > 0 seconds, got {self.flush_interval_s!r}.")
        if not all(isinstance(a, AlertRule) for a in self.alerts):
            problems.append("monitor alerts must be a list of alert rules (mappings).")
        if self.detectors is not None or self.detector_options:
            problems += detector_problems(self.detectors, self.detector_options)
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorSettings:
        """Settings from a mapping (the ``monitor:`` section of a YAML file).

        Raises:
            ConfigError: unknown keys (the known ones are listed) or invalid values (all of them).
        """
        return cls(**_known_fields(cls, data, "monitor setting"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples) that :meth:`from_dict` reads back."""
        out = dataclasses.asdict(self)
        out["windows"] = list(self.windows)
        return out
