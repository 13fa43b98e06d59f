"""The ``watch:`` section (``lmforge watch replay|eval``): which runs score a stream, how it is
windowed, and which spike detector alerts on a surge of negative texts.

The section is plain data like every other one; the detector names are checked by the watch
app's registry when it runs (it lives floors above this one). Durations (``window``,
``cooldown``) are strings such as ``30m``, ``1h``, ``1d``, ``7d`` or ``2w``, parsed by
:func:`parse_duration`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from lmforge.errors import ConfigError

__all__ = ["ALERT_ACTIONS", "WATCH_METRICS", "WatchConfig", "parse_duration"]

WATCH_METRICS = ("negative_share", "negative_count", "mean_score")
"""What a watch detector may follow per window (see :attr:`WatchConfig.metric`)."""

ALERT_ACTIONS = ("log", "webhook")
"""What a watch alert may do besides its line in alerts.jsonl (the monitor's alert actions)."""

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)\s*$")


def parse_duration(text: str, where: str = "watch.window") -> float:
    """Seconds in a duration string: a positive number and a unit (s, m/min, h, d, w), e.g. ``7d``.

    Raises:
        ConfigError: the string does not parse, or is not positive (the message names ``where``).
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"{where} must be a duration such as 30m, 1h, 1d or 7d (a positive number and a unit: "
            f"s, m, h, d, w), got {text!r}."
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class WatchConfig:
    """The financial sentiment watch: topic + sentiment over a stream of dated texts, spike alerts."""

    sentiment_run: str | None = None
    """Run directory of the sentiment classifier (required by `lmforge watch`)."""
    topic_run: str | None = None
    """Run directory of a topic classifier; without it every text is topic `all`."""
    negative_label: str = "negative"
    """The sentiment run's label whose share is watched (e.g. `Bearish`, `negative`)."""
    window: str = "1d"
    """Length of one aggregation window: `30m`, `1h`, `1d`, `7d`... Windows are aligned to
    Monday 1970-01-05 00:00 UTC, so `7d` windows run Monday to Sunday."""
    detector: str = "zscore"
    """Spike detector by registry name: `zscore`, `ewma`, `cusum`, `page-hinkley`, `fixed`."""
    metric: Literal["negative_share", "negative_count", "mean_score"] = "negative_share"
    """The series per topic and window the detector follows: `negative_share` (texts predicted as the
    negative label / texts), `negative_count` (how many; a surge of bad news in a busier week) or
    `mean_score` (the mean probability of the negative label)."""
    threshold: float | None = None
    """The detector's alert threshold (z for `zscore`/`ewma`, h for `cusum`, lambda for
    `page-hinkley`, the negative share itself for `fixed`). Unset: the detector's default."""
    min_count: int = 10
    """A window with fewer texts than this (per topic) cannot fire and does not move the baseline."""
    cooldown: str | int = 0
    """After an alert, a new incident of the same topic does not alert for this long: a duration
    (`3d`) or a number of windows (`2`). 0: every incident alerts."""
    baseline: int = 8
    """Trailing windows (with at least `min_count` texts) the baseline is estimated from."""
    time_field: str = "time"
    """Field (JSONL) or column (CSV) holding each text's timestamp."""
    text_field: str = "text"
    """Field or column holding the text."""
    max_bad_share: float = 0.05
    """Rows without a parseable timestamp or text are skipped with a warning; above this share
    of the stream the replay stops (exit 2)."""
    batch_size: int = 64
    """Texts per model call when scoring."""
    variant: str | None = None
    """Variant of the runs to load (`fp32`, a `compressed/` folder); unset: each run's selected one."""
    actions: list[str] = field(default_factory=lambda: ["log"])
    """What each alert does besides its alerts.jsonl line: `log` (a WARNING record) and/or
    `webhook` (a JSON POST to `webhook_url`), through the monitor's alert notifier."""
    webhook_url: str | None = None
    """http(s) URL the `webhook` action posts each alert to."""

    def __post_init__(self) -> None:
        problems = []
        for key in ("window", "cooldown"):
            value = getattr(self, key)
            if key == "cooldown" and (isinstance(value, int) or value.strip() == "0"):
                if isinstance(value, int) and value < 0:
                    problems.append(f"watch.cooldown must be a duration or a number of windows >= 0, got {value}.")
                continue
            try:
                parse_duration(value, f"watch.{key}")
            except ConfigError as exc:
                problems.extend(exc.problems)
        if self.threshold is not None and not math.isfinite(self.threshold):
            problems.append(f"watch.threshold must be a finite number, got {self.threshold}.")
        for key in ("min_count", "baseline", "batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"watch.{key} must be at least 1, got {getattr(self, key)}.")
        if not 0.0 <= self.max_bad_share < 1.0:
            problems.append(f"watch.max_bad_share must be in [0, 1), got {self.max_bad_share}.")
        unknown = [a for a in self.actions if a not in ALERT_ACTIONS]
        if unknown or len(set(self.actions)) != len(self.actions):
            problems.append(f"watch.actions must list distinct actions of {', '.join(ALERT_ACTIONS)}, "
                            f"got {self.actions!r}.")
        if "webhook" in self.actions:
            parts = urlsplit(self.webhook_url or "")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(f"watch.actions has webhook but watch.webhook_url is not an http(s) URL: "
                                f"{self.webhook_url!r}.")
        if problems:
            raise ConfigError(problems)

    @property
    def window_s(self) -> float:
        """The window length in seconds."""
        return parse_duration(self.window)

    @property
    def cooldown_s(self) -> float:
        """The cooldown in seconds (a number of windows times the window)."""
        if isinstance(self.cooldown, int):
            return self.cooldown * self.window_s
        return 0.0 if self.cooldown.strip() == "0" else parse_duration(self.cooldown, "watch.cooldown")
