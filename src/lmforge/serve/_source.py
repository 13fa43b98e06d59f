"""What ``lmforge serve RUN_OR_REGISTRY`` serves: a run directory, a state folder or a database URL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError
from lmforge.guard import trust_run
from lmforge.serve._errors import NotFoundError
from lmforge.serve._registry import ModelRegistry
from lmforge.serve._runs import manifest_sha256, resolve_variant, run_directory
from lmforge.serve._settings import REGISTRY_DB

__all__ = ["ensure_source", "model_name_for", "source_overrides"]


def source_overrides(target: str) -> dict[str, Any]:
    """Settings for a positional ``RUN_OR_REGISTRY``.

    - a run directory (has ``manifest.json``): ``source``;
    - a database URL (``sqlite:///...``, ``postgresql+psycopg://...``): ``registry_url``;
    - a ``.db`` file: ``registry_url`` (SQLite);
    - a state folder (holds ``registry.db``): ``state_dir``.

    Raises:
        ConfigError: none of these (the message says what was expected).
    """
    if "://" in target:
        return {"registry_url": target}
    path = Path(target).expanduser()
    if (path / "manifest.json").is_file():
        return {"source": str(path.resolve())}
    if path.is_file() and path.suffix == ".db":
        return {"registry_url": f"sqlite:///{path.resolve()}"}
    if (path / REGISTRY_DB).is_file():
        return {"state_dir": str(path)}
    if not path.exists():
        raise ConfigError(
            f"{target} does not exist. Give a run directory (with manifest.json), a state folder "
            f"(with {REGISTRY_DB}) or a registry URL such as sqlite:///path/registry.db."
        )
    raise ConfigError(
        f"{target} is neither a run directory (no manifest.json) nor a state folder (no {REGISTRY_DB})."
    )


def model_name_for(run: Path) -> str:
    """A valid model name from a run directory's name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run.name).strip("-._")[:64]
    return name or "model"


def ensure_source(settings: Any, registry: ModelRegistry, actor: str) -> str:
    """Register the served run (unless this very run is already a version) and activate it.

    A version matches when its run path, pinned variant and manifest SHA-256 are the same, so
    restarting ``lmforge serve RUN`` reuses the version instead of adding one per start, and a
    run that changed since (a new training, a re-compression) becomes a new version.

    Returns:
        The model name the run is served under.
    """
    run = run_directory(settings.source)
    name = settings.model_name or model_name_for(run)
    variant = resolve_variant(run, settings.variant)
    digest = manifest_sha256(run)
    try:
        versions = registry.list_versions(name)
        active = registry.get_model(name).active_version
    except NotFoundError:
        versions, active = [], None
    same = [
        v for v in versions if v.run_path == str(run) and v.variant == variant and v.manifest_sha256 == digest
    ]
    if same:
        # Refuse an unsigned or tampered run even when it is already registered (register checks new ones).
        trust_run(run, settings.public_key, allow_unsigned=settings.allow_unsigned)
        version = same[-1].version
    else:
        version = registry.register(
            name,
            run,
            variant=variant,
            public_key=settings.public_key,
            allow_unsigned=settings.allow_unsigned,
            actor=actor,
        ).version
    if active != version:
        registry.activate(name, version, actor=actor)
    return name
