"""Extensions: routes an application adds to the server, behind the server's own keys and limits.

The serving layer sits below the applications (``lmforge.apps``), so it cannot import them; an
app hands the server a :class:`ServeExtension` instead (``lmforge serve`` on an app's directory
asks ``lmforge.apps`` for one). The app factory then

- asks each extension for its router with a :class:`ServeContext` (the settings, the app's
  Prometheus registry through :class:`~lmforge.serve._metrics.ServeMetrics`, and the key checks
  of both roles), and mounts it beside the server's own routes, so its templates are counted in
  ``lmforge_requests_total`` and its errors get the JSON error body;
- calls :meth:`ServeExtension.start` (in a worker thread: loading models blocks) once the
  registry's models are loaded, with the :class:`ExtensionHost` it may keep: the admission
  control of ``/v1/predict``, the monitor when one runs, and the registry database's engine;
- counts the server ready only when every extension is (:meth:`ServeExtension.ready`), and
  calls :meth:`ServeExtension.close` on shutdown, after the in-flight requests finished.

A route of an extension admits its work with :func:`admitted`, so it shares the in-flight and
queue limits of ``/v1/predict`` and is refused with the same 429.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lmforge.serve._admission import Overloaded
from lmforge.serve._errors import overloaded

if TYPE_CHECKING:
    from fastapi import APIRouter, Request

    from lmforge.serve._dependencies import KeyCheck
    from lmforge.serve._metrics import ServeMetrics
    from lmforge.serve._settings import ServeSettings

__all__ = ["ExtensionHost", "ServeContext", "ServeExtension", "admitted", "host_of"]


@dataclass(frozen=True)
class ServeContext:
    """What an extension builds its router from (before the server starts)."""

    settings: ServeSettings
    metrics: ServeMetrics
    """``metrics.registry`` is this app's Prometheus registry: register the extension's metrics there."""
    require_predict: KeyCheck
    """A FastAPI dependency: the request's key with the ``predict`` role (or 401/403/429)."""
    require_admin: KeyCheck
    require_page: KeyCheck | None = None
    """A FastAPI dependency for an extension's pages and what they read: a ``predict`` key from the
    headers, or, on a GET without one, an admin's dashboard login (the ``POST /login`` session
    cookie); a browser with neither is sent to the login form (303) and back. None: not offered."""


@dataclass(frozen=True)
class ExtensionHost:
    """What a started server lends its extensions."""

    settings: ServeSettings
    monitor: Any | None
    """The running :class:`lmforge.monitor.Monitor` (``--monitor``), else None."""
    database: Any
    """The registry database's SQLAlchemy engine (SQLite or PostgreSQL): an extension's own tables go there."""


class ServeExtension(Protocol):
    """Routes and state an application adds to ``lmforge serve``."""

    name: str
    """Short and unique among one server's extensions (``bot``, ``recommend``): named in logs."""

    def router(self, context: ServeContext) -> APIRouter:
        """The extension's routes; called once, when the app is built."""
        ...

    def start(self, host: ExtensionHost) -> None:
        """Load what the routes need (called in a worker thread, after the server's models load)."""
        ...

    def ready(self) -> bool:
        """Whether the routes can answer (``/readyz`` says 503 until every extension is ready)."""
        ...

    def close(self) -> None:
        """Free what :meth:`start` loaded (called in a worker thread, at shutdown)."""
        ...


def host_of(request: Request) -> ExtensionHost:
    """The :class:`ExtensionHost` of the app that serves ``request`` (set by its lifespan)."""
    host: ExtensionHost = request.state.extension_host
    return host


@contextlib.contextmanager
def admitted(request: Request, n_texts: int) -> Iterator[None]:
    """Hold one in-flight slot of the server's admission control for ``n_texts`` texts.

    Raises:
        ApiError: 429 ``overloaded`` (with ``Retry-After``) when the server is at capacity;
            counted under ``lmforge_rejected_requests_total{reason="overloaded"}``.
    """
    runtime = request.state.runtime
    try:
        slot = runtime.admission.admit(n_texts)
    except Overloaded as exc:
        request.app.state.metrics.rejected.labels("overloaded").inc()
        raise overloaded(exc.reason, exc.retry_after) from None
    try:
        yield
    finally:
        runtime.admission.release(slot)
