"""serve: the HTTP serving layer: app factory, micro-batching, admission control, API keys, registry.

- :func:`create_app` builds the FastAPI app for a :class:`ServeSettings`; :func:`run_server`
  runs it under uvicorn with a readiness drain on SIGTERM (``lmforge serve``).
- The model registry (SQLAlchemy; SQLite in the state folder by default, PostgreSQL by URL)
  holds named models, verified immutable versions, the active one and a canary, and API
  keys (hashed); :func:`open_stores` opens it offline (``lmforge registry``, ``lmforge keys``).
- ``backend: ray`` runs each model version as a Ray Serve application behind the same API.
- An application adds its routes as a :class:`ServeExtension` (``create_app(settings, extensions)``):
  they sit behind the same keys, admission limits (:func:`admitted`) and metrics.

Importing this package is cheap (standard library only); FastAPI, SQLAlchemy, uvicorn,
torch and Ray load when an app is built or a store is opened (``pip install 'lmforge[serve]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.serve._errors import ApiError
from lmforge.serve._extensions import ExtensionHost, ServeContext, ServeExtension, admitted, host_of
from lmforge.serve._settings import (
    AuthSettings,
    BatchingSettings,
    CanarySettings,
    GenerationSettings,
    LimitSettings,
    ServeSettings,
    load_settings,
    settings_from_dict,
    with_monitor,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "ApiError",
    "AuthSettings",
    "BatchingSettings",
    "CanarySettings",
    "ExtensionHost",
    "GenerationSettings",
    "LimitSettings",
    "ServeContext",
    "ServeExtension",
    "ServeSettings",
    "admitted",
    "create_app",
    "create_key",
    "host_of",
    "load_settings",
    "open_stores",
    "revoke_key",
    "run_server",
    "settings_from_dict",
    "source_overrides",
    "with_monitor",
]


def create_app(settings: ServeSettings, extensions: Sequence[ServeExtension] = ()) -> FastAPI:
    """See :func:`lmforge.serve._app.create_app`."""
    require("fastapi", extra="serve", purpose="lmforge serve")
    from lmforge.serve._app import create_app as _create_app

    return _create_app(settings, extensions)


def run_server(settings: ServeSettings, extensions: Sequence[ServeExtension] = ()) -> None:
    """See :func:`lmforge.serve._server.run_server`."""
    from lmforge.serve._server import run_server as _run_server

    _run_server(settings, extensions)


def open_stores(settings: ServeSettings) -> Any:
    """See :func:`lmforge.serve._admin.open_stores` (a context manager)."""
    from lmforge.serve._admin import open_stores as _open_stores

    return _open_stores(settings)


def source_overrides(target: str) -> dict[str, Any]:
    """See :func:`lmforge.serve._source.source_overrides`."""
    from lmforge.serve._source import source_overrides as _source_overrides

    return _source_overrides(target)


def create_key(stores: Any, name: str, role: str, *, actor: str, rate_per_s: float | None = None) -> tuple[str, Any]:
    """See :func:`lmforge.serve._admin.create_key`: ``(token, ApiKey)``; the token is shown only once."""
    from lmforge.serve._admin import create_key as _create_key

    return _create_key(stores, name, role, actor=actor, rate_per_s=rate_per_s)


def revoke_key(stores: Any, key_id: str, *, actor: str) -> Any:
    """See :func:`lmforge.serve._admin.revoke_key`."""
    from lmforge.serve._admin import revoke_key as _revoke_key

    return _revoke_key(stores, key_id, actor=actor)
