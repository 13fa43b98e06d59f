"""Alert rules evaluated against live metrics; one notification per incident, log and webhook actions.

An incident starts when a rule's condition starts to hold for a model version and ends
when it stops. Its start is notified (``status: firing``) unless the rule notified less
than ``cooldown_s`` ago (then it is recorded as ``suppressed``); its end is notified
(``resolved``) when its start was. Webhooks are posted by a background thread, so a slow
receiver never holds up the store writer; each is retried once.
"""

from __future__ import annotations

import json
import logging
import operator
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmforge.monitor._settings import AlertRule

__all__ = ["AlertEngine", "Incident", "WebhookNotifier"]

log = logging.getLogger(__name__)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass
class Incident:
    """State of one rule for one model version."""

    active: bool = False
    notified: bool = False
    since: float | None = None


class AlertEngine:
    """Tracks every (rule, model, version) and emits firing/resolved/suppressed events.

    Args:
        rules: the alert rules.
        emit: called with each event dict and its rule (from the evaluating thread; keep it quick).
        clock: time source (tests pass a fake one).
    """

    def __init__(
        self,
        rules: list[AlertRule],
        emit: Callable[[dict[str, Any], AlertRule], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.emit = emit
        self.clock = clock
        self._state: dict[tuple[int, str, str], Incident] = {}
        self._last_notified: dict[tuple[int, str, str], float] = {}
        self._lock = threading.Lock()

    def update(self, index: int, model: str, version: str, value: float | None) -> dict[str, Any] | None:
        """Feed the current value of rule ``index``'s metric; returns the event emitted, if any.

        ``None`` means "no data" and changes nothing: an incident neither starts nor ends.
        """
        if value is None:
            return None
        rule = self.rules[index]
        key = (index, model, version)
        holds = _OPS[rule.op](float(value), float(rule.threshold))
        now = self.clock()
        with self._lock:
            state = self._state.setdefault(key, Incident())
            if holds and not state.active:
                last = self._last_notified.get(key)
                state.active, state.since = True, now
                state.notified = last is None or now - last >= rule.cooldown_s
                if state.notified:
                    self._last_notified[key] = now
                status = "firing" if state.notified else "suppressed"
            elif not holds and state.active:
                state.active = False
                status = "resolved" if state.notified else ""
                state.notified = False
            else:
                return None
        if not status:
            return None
        event = {
            "status": status,
            "rule": rule.name,
            "metric": rule.metric,
            "op": rule.op,
            "threshold": rule.threshold,
            "value": float(value),
            "window": rule.window,
            "model": model,
            "version": version,
            "ts": now,
            "started_at": state.since if status != "resolved" else None,
            "actions": list(rule.actions) if status != "suppressed" else [],
        }
        self.emit(event, rule)
        return event

    def active(self) -> list[dict[str, Any]]:
        """Incidents in progress: rule, model, version, since, notified."""
        with self._lock:
            return [
                {
                    "rule": self.rules[i].name,
                    "metric": self.rules[i].metric,
                    "model": m,
                    "version": v,
                    "since": s.since,
                    "notified": s.notified,
                }
                for (i, m, v), s in sorted(self._state.items())
                if s.active
            ]


class WebhookNotifier:
    """Delivers alert events: a log record and/or a JSON POST, from one background thread."""

    def __init__(self, retry_delay_s: float = 0.5) -> None:
        self.retry_delay_s = retry_delay_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lmforge-monitor-alerts", daemon=True)
            self._thread.start()

    def submit(self, event: dict[str, Any], rule: AlertRule) -> None:
        if "log" in event["actions"]:
            log.warning(
                "ALERT %s: %s (value %.4g, threshold %s %g) for %s %s",
                event["status"],
                event["rule"],
                event["value"],
                event["op"],
                event["threshold"],
                event["model"],
                event["version"],
            )
        if "webhook" in event["actions"] and rule.webhook_url:
            self._queue.put((event, rule.webhook_url, rule.timeout_s))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted webhook was attempted; False on timeout."""
        if self._thread is None:
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            event, url, timeout = item
            try:
                self._post(event, url, timeout)
            except Exception:  # a notifier bug must not stop later notifications
                log.exception("alert webhook delivery crashed")

    def _post(self, event: dict[str, Any], url: str, timeout: float) -> None:
        body = json.dumps(event).encode("utf-8")
        for attempt in (1, 2):
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",  # http(s) checked in AlertRule
                headers={"Content-Type": "application/json", "User-Agent": "lmforge-monitor"},
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    response.read()
                self.delivered += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if attempt == 1:
                    time.sleep(self.retry_delay_s)
        self.failed += 1
        log.error(
            "alert webhook to %s failed twice (%s); event %s %s dropped",
            url,
            self.last_error,
            event["status"],
            event["rule"],
        )
