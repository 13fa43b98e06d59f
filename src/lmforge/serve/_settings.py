"""Settings of the serving layer: typed dataclasses holding plain data, one per concern.

``ServeSettings`` round-trips to YAML (``lmforge serve --config serve.yaml``)::

    host: 127.0.0.1
    port: 8000
    state_dir: .lmforge
    batching: {max_batch_size: 64, max_wait_ms: 0}
    limits: {max_in_flight: 256, max_queued_texts: 2048, request_timeout_s: 10}
    auth: {rate_per_s: 50, burst: 100, metrics_auth: true}
    canary: {min_requests: 200, error_margin: 0.02, min_feedback: 50, accuracy_margin: 0.05}
    generation: {max_new_tokens: 256, token_budget: 16384, max_batch: 16, request_timeout_s: 120}

Every field is checked in ``__post_init__``; all problems are reported at once, with the
dotted key, as one :class:`~lmforge.errors.ConfigError`. This module is standard library
only, so reading settings never imports FastAPI, torch or SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import ConfigError
from lmforge.guard import AUDIT_LOG_ENV
from lmforge.serve._names import name_problem
from lmforge.serve._settings_sections import (
    AuthSettings,
    BatchingSettings,
    CanarySettings,
    GenerationSettings,
    LimitSettings,
)
from lmforge.serve._settings_sections import check as _check
from lmforge.serve._settings_sections import positive as _positive

__all__ = [
    "AuthSettings",
    "BatchingSettings",
    "CanarySettings",
    "GenerationSettings",
    "LimitSettings",
    "ServeSettings",
    "load_settings",
    "settings_from_dict",
    "with_monitor",
]

BACKENDS = ("local", "ray")
REGISTRY_DB = "registry.db"
_STATE_DIR = ".lmforge"


@dataclass
class ServeSettings:
    """Everything ``create_app`` and ``lmforge serve`` need. Plain data; builders make the objects."""

    source: str | None = None
    """What to serve: a run directory (registered and activated as a version of ``model_name``),
    or None to serve whatever the registry has active."""
    model_name: str | None = None
    """Name a served run is registered under (default: the run directory's name)."""
    variant: str | None = None
    """Compressed variant of a served run (default: its selected one, else fp32)."""
    state_dir: str = _STATE_DIR
    """Folder of the registry database (models, versions, API keys) and the default audit log."""
    registry_url: str | None = None
    """SQLAlchemy URL of the registry database (default ``sqlite:///STATE_DIR/registry.db``);
    ``postgresql+psycopg://user@host/db`` shares one registry between servers."""
    audit_log: str | None = None
    """Audit log of admin actions (default ``$LMFORGE_AUDIT_LOG``, else ``STATE_DIR/audit.jsonl``)."""
    host: str = "127.0.0.1"
    """Interface to bind; loopback unless told otherwise."""
    port: int = 8000
    backend: str = "local"
    """``local``: inference threads in this process; ``ray``: a Ray Serve deployment per model version."""
    replicas: int = 1
    """Ray Serve replicas per model version (``backend: ray``)."""
    ray_address: str | None = None
    """An existing Ray cluster (``ray://...`` or ``auto``); None starts a local Ray instance."""
    ray_num_cpus: int | None = None
    """CPUs of the local Ray instance started here (None: Ray's default, every core)."""
    ray_replica_cpus: float = 1.0
    """CPUs reserved per replica."""
    allow_unsigned: bool = False
    """Serve runs without ``signature.json`` (their files are still checked against the manifest)."""
    public_key: str | None = None
    """Ed25519 public key (PEM) that signed the runs (default ``$LMFORGE_PUBLIC_KEY``, else the user's own,
    see :func:`lmforge.guard.trust_run`)."""
    default_model: str | None = None
    """Model a predict request without ``model`` goes to (default: the only one, else the first by name)."""
    registry_poll_s: float = 5.0
    """How often the server re-reads the registry, so ``lmforge registry activate`` run elsewhere
    takes effect (0: never)."""
    drain_s: float = 2.0
    """After SIGTERM, seconds ``/readyz`` answers 503 while requests are still served, before the
    listener closes (a load balancer notices and stops sending)."""
    graceful_timeout_s: float = 30.0
    """After the drain, longest wait for in-flight requests before they are cancelled."""
    access_log: bool = False
    """uvicorn's access log (method, path, status; never bodies or headers)."""
    docs: bool = False
    """Serve ``/docs`` (Swagger UI). Its script and stylesheet come from the ``swagger-ui-bundle``
    package (the ``serve`` extra) under ``/docs/assets/``, never from a CDN, so the page works
    offline. ``/openapi.json`` is served either way."""
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    monitor: Any = None
    """A ``lmforge.monitor.MonitorSettings`` to record predictions and take feedback; None: off."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.backend not in BACKENDS:
            problems.append(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}.")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            problems.append(f"port must be an integer in 0..65535, got {self.port!r}.")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            problems.append(f"replicas must be an integer >= 1, got {self.replicas!r}.")
        if self.replicas > 1 and self.backend == "local":
            problems.append(
                f"replicas={self.replicas} needs backend 'ray'; the local backend scales with "
                "batching.workers instead."
            )
        _positive(problems, "ray_replica_cpus", self.ray_replica_cpus, allow_zero=True)
        for name in ("registry_poll_s", "drain_s"):
            _positive(problems, name, getattr(self, name), allow_zero=True)
        _positive(problems, "graceful_timeout_s", self.graceful_timeout_s)
        if self.model_name is not None:
            if (problem := name_problem(self.model_name)) is not None:
                problems.append(f"model_name: {problem}")
        _check(problems)

    # -- derived -------------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The registry URL: ``registry_url``, else SQLite in the state folder."""
        if self.registry_url:
            return self.registry_url
        return f"sqlite:///{Path(self.state_dir).expanduser().resolve() / REGISTRY_DB}"

    @property
    def audit_log_path(self) -> Path:
        """``audit_log``, else ``$LMFORGE_AUDIT_LOG``, else ``STATE_DIR/audit.jsonl``."""
        return Path(self.audit_log or os.environ.get(AUDIT_LOG_ENV) or Path(self.state_dir) / "audit.jsonl")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the monitor settings as a dict too), ready for YAML/JSON."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "monitor"}
        for name in ("batching", "limits", "auth", "canary", "generation"):
            out[name] = dataclasses.asdict(out[name])
        monitor = self.monitor
        out["monitor"] = monitor.to_dict() if hasattr(monitor, "to_dict") else monitor
        return out


_SECTIONS = {
    "batching": BatchingSettings,
    "limits": LimitSettings,
    "auth": AuthSettings,
    "canary": CanarySettings,
    "generation": GenerationSettings,
}


def _monitor_settings(value: Any) -> Any:
    if value is None or not isinstance(value, dict):
        return value
    module = require("lmforge.monitor", extra="serve", purpose="Monitoring predictions")
    return module.MonitorSettings(**value)


def settings_from_dict(data: dict[str, Any]) -> ServeSettings:
    """``ServeSettings`` from plain data (a parsed YAML file), every problem reported at once.

    Raises:
        ConfigError: unknown keys (the known ones are listed), wrong types or bad values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"Serve settings must be a mapping of keys to values, got {type(data).__name__}.")
    known = {f.name for f in dataclasses.fields(ServeSettings)}
    problems = [
        f"unknown setting {key!r}. Known: {', '.join(sorted(known))}." for key in data if key not in known
    ]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            continue
        if key in _SECTIONS:
            section = _SECTIONS[key]
            fields = {f.name for f in dataclasses.fields(section)}
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.append(f"{key} must be a mapping, got {type(value).__name__}.")
                continue
            bad = [k for k in value if k not in fields]
            problems += [f"unknown setting '{key}.{k}'. Known: {', '.join(sorted(fields))}." for k in bad]
            try:
                kwargs[key] = section(**{k: v for k, v in value.items() if k in fields})
            except ConfigError as exc:
                problems += exc.problems
        elif key == "monitor":
            kwargs[key] = value  # built below, once everything else is known to be valid
        else:
            kwargs[key] = value
    _check(problems)
    monitor = kwargs.get("monitor")
    if isinstance(monitor, dict) and "url" not in monitor:  # the store lives in the state folder
        state = kwargs.get("state_dir") or _STATE_DIR
        kwargs["monitor"] = {**monitor, "url": _state_monitor_url(state)}
    try:
        kwargs["monitor"] = _monitor_settings(kwargs.get("monitor"))
        return ServeSettings(**kwargs)
    except TypeError as exc:  # a monitor section with an unknown key
        raise ConfigError(f"monitor: {exc}") from None


def with_monitor(settings: ServeSettings) -> ServeSettings:
    """``settings`` with monitoring on, its store in ``STATE_DIR/monitor.db``, unless it is on already."""
    if settings.monitor is not None:
        return settings
    module = require("lmforge.monitor", extra="serve", purpose="Monitoring predictions")
    return dataclasses.replace(settings, monitor=module.MonitorSettings(url=_state_monitor_url(settings.state_dir)))


def _state_monitor_url(state_dir: str | Path) -> str:
    return f"sqlite:///{Path(state_dir).expanduser().resolve() / 'monitor.db'}"


def load_settings(path: str | Path | None = None, **overrides: Any) -> ServeSettings:
    """Settings from a YAML file (or the defaults), then ``overrides`` (top-level keys; None skipped)."""
    data: dict[str, Any] = {}
    if path is not None:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Serve settings file not found: {path}.")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, got {type(loaded).__name__}.")
        data = dict(loaded or {})
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    return settings_from_dict(data)
