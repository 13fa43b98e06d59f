"""The alert wiring: each rule evaluated for every model version when a metric may have changed.

Whatever can change a metric (a stored batch, feedback, a drift check) calls
:meth:`AlertWiring.mark`; the store writer then evaluates the rules on its thread. Each event
the engine emits is stored in the ``alerts`` table and handed to the webhook notifier.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from lmforge.monitor._alerts import AlertEngine, WebhookNotifier
from lmforge.monitor._settings import AlertRule

__all__ = ["AlertWiring"]

log = logging.getLogger("lmforge.monitor._monitor")  # the Monitor's name, as its writer and drift use

# One rule evaluation: (metric, model, version, window, min_samples) -> value, None: not enough data.
MetricValue = Callable[[str, str, str, int, int], float | None]
_GLOBAL_METRICS = ("dropped", "error_rate")  # not per model version: evaluated once, as ("*", "*")


class AlertWiring:
    """Alert rules wired to the monitor's metrics, its store and the webhook notifier.

    Args:
        rules: the alert rules.
        metric_value: the current value of a rule's metric for one model version.
        versions: the model versions the per-version rules are evaluated for.
    """

    def __init__(
        self,
        rules: list[AlertRule],
        metric_value: MetricValue,
        versions: Callable[[], list[tuple[str, str]]],
    ) -> None:
        self.rules = rules
        self.notifier = WebhookNotifier()
        self.store: Any = None
        self._engine = AlertEngine(rules, self._on_alert)
        self._metric_value = metric_value
        self._versions = versions
        self._dirty = threading.Event()

    def start(self, store: Any) -> None:
        """Store events in ``store`` from now on; start the webhook thread."""
        self.store = store
        self.notifier.start()

    def close(self) -> None:
        self.notifier.close()

    def mark(self) -> None:
        """A metric may have changed: evaluate the rules at the next chance."""
        self._dirty.set()

    @property
    def marked(self) -> bool:
        return self._dirty.is_set()

    def evaluate_if_marked(self) -> None:
        """Evaluate the rules if :meth:`mark` was called since the last evaluation."""
        if self._dirty.is_set():
            self._dirty.clear()
            self.evaluate()

    def evaluate(self) -> None:
        """Feed every rule the current value of its metric, for every model version."""
        for index, rule in enumerate(self.rules):
            keys = [("*", "*")] if rule.metric in _GLOBAL_METRICS else self._versions()
            for model, version in keys:
                try:
                    value = self._metric_value(rule.metric, model, version, rule.window, rule.min_samples)
                    self._engine.update(index, model, version, value)
                except Exception:
                    log.exception("monitor: alert rule %s failed", rule.name)

    def active(self) -> list[dict[str, Any]]:
        """Incidents in progress (see :meth:`AlertEngine.active`)."""
        return self._engine.active()

    def _on_alert(self, event: dict[str, Any], rule: AlertRule) -> None:
        self.notifier.submit(event, rule)
        try:
            self.store.insert(
                "alerts",
                [
                    {
                        "ts": event["ts"],
                        "rule": event["rule"],
                        "metric": event["metric"],
                        "status": event["status"],
                        "value": event["value"],
                        "threshold": event["threshold"],
                        "model": event["model"],
                        "version": event["version"],
                    }
                ],
            )
        except Exception:
            log.exception("monitor: could not store alert event")
