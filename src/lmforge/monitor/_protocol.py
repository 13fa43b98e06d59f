"""What the summary, the dashboard, the Prometheus collector and the HTTP routes use of a Monitor.

They are typed against this protocol rather than :class:`~lmforge.monitor.Monitor`, so they
never import the module that builds them (the Monitor's ``router``, ``collector``, ``summary``
and ``dashboard_html`` do); mypy checks that the Monitor provides every member.
"""

from __future__ import annotations

from typing import Any, Protocol

from lmforge.monitor._alerts import WebhookNotifier
from lmforge.monitor._drift import DriftResult
from lmforge.monitor._settings import MonitorSettings

__all__ = ["MonitorLike"]


class MonitorLike(Protocol):
    """The members of :class:`~lmforge.monitor.Monitor` its views read (documented there)."""

    settings: MonitorSettings
    labels: list[str]
    store: Any

    @property
    def reference(self) -> Any: ...

    @property
    def notifier(self) -> WebhookNotifier: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def written(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def pruned(self) -> int: ...

    @property
    def invalid(self) -> int: ...

    @property
    def errors(self) -> int: ...

    @property
    def writer_restarts(self) -> int: ...

    @property
    def writer_pid(self) -> int | None: ...

    def versions(self) -> list[tuple[str, str]]: ...

    def label_counts(self) -> dict[tuple[str, str], dict[str, int]]: ...

    def cached_live_metrics(
        self, model: str, version: str, window: int, ttl: float = 2.0
    ) -> dict[str, Any]: ...

    def window_stats(self, model: str, version: str, window: int) -> dict[str, Any]: ...

    def drift_latest(self, model: str, version: str) -> tuple[float, int, list[DriftResult]] | None: ...

    def active_alerts(self) -> list[dict[str, Any]]: ...

    def add_feedback(
        self, prediction_id: str, label: str, *, key_id: str | None = None, admin: bool = False,
        correction: str | None = None,
    ) -> dict[str, Any]: ...

    def summary(self) -> dict[str, Any]: ...

    def dashboard_html(
        self, minutes: float = 60.0, model: str | None = None, version: str | None = None
    ) -> str: ...
