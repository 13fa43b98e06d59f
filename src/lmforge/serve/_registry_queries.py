"""Reading the model registry: what a read returns (:class:`ModelInfo`, :class:`VersionInfo`) and the queries.

Every query takes an open connection and the tables, so the registry's commands run them
inside their own transaction and see what they have just written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from lmforge.serve._db import Tables
from lmforge.serve._errors import ConflictError, NotFoundError

__all__ = [
    "ModelInfo",
    "VersionInfo",
    "find_model",
    "find_version",
    "history",
    "list_models",
    "list_versions",
    "next_version",
    "require_active",
    "rollback_target",
    "sa",
    "version_from_row",
]


@dataclass(frozen=True)
class VersionInfo:
    """One registered version of a model."""

    model: str
    version: int
    run_path: str
    variant: str
    manifest_sha256: str
    signed: bool
    key_id: str | None
    labels: list[str]
    status: str
    """``registered``, ``active``, ``canary``, ``retired`` (was active) or ``rolled_back``."""
    registered_at: str
    registered_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """A model's serving state."""

    name: str
    active_version: int | None
    canary_version: int | None
    canary_percent: float
    versions: int
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sa() -> Any:
    """SQLAlchemy, imported when a query first runs (``import lmforge.serve`` stays light)."""
    import sqlalchemy

    return sqlalchemy


def list_models(conn: Any, t: Tables) -> list[ModelInfo]:
    """Every model, by name."""
    sql = sa()
    m, v = t.models, t.versions
    counts = sql.select(v.c.model, sql.func.count().label("n")).group_by(v.c.model).subquery()
    query = (
        sql.select(m, counts.c.n)
        .select_from(m.outerjoin(counts, m.c.name == counts.c.model))
        .order_by(m.c.name)
    )
    return [_model_from_row(r, r["n"] or 0) for r in conn.execute(query).mappings()]


def find_model(conn: Any, t: Tables, name: str) -> ModelInfo:
    """One model, or :class:`NotFoundError` listing the names there are."""
    m, v = t.models, t.versions
    row = conn.execute(m.select().where(m.c.name == name)).mappings().first()
    if row is None:
        names = [r for (r,) in conn.execute(sa().select(m.c.name).order_by(m.c.name))]
        raise NotFoundError(f"No model named {name[:80]!r}. Registered: {', '.join(names) or 'none'}.")
    n = conn.execute(sa().select(sa().func.count()).select_from(v).where(v.c.model == name)).scalar_one()
    return _model_from_row(row, n)


def find_version(conn: Any, t: Tables, name: str, version: int) -> VersionInfo:
    """One version of ``name``, or :class:`NotFoundError` listing the versions there are."""
    v = t.versions
    row = conn.execute(v.select().where((v.c.model == name) & (v.c.version == version))).mappings().first()
    if row is None:
        have = [
            r
            for (r,) in conn.execute(sa().select(v.c.version).where(v.c.model == name).order_by(v.c.version))
        ]
        raise NotFoundError(
            f"Model {name!r} has no version {version}. Versions: {', '.join(map(str, have)) or 'none'}."
        )
    return version_from_row(row)


def list_versions(conn: Any, t: Tables, name: str) -> list[VersionInfo]:
    """Every version of ``name``, oldest first (the model must exist)."""
    v = t.versions
    find_model(conn, t, name)
    rows = conn.execute(v.select().where(v.c.model == name).order_by(v.c.version)).mappings()
    return [version_from_row(r) for r in rows]


def history(conn: Any, t: Tables, name: str) -> list[dict[str, Any]]:
    """The model's events, oldest first (the model must exist)."""
    e = t.events
    find_model(conn, t, name)
    rows = conn.execute(e.select().where(e.c.model == name).order_by(e.c.id)).mappings()
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


def next_version(conn: Any, t: Tables, name: str) -> int:
    """The number the next version of ``name`` gets."""
    v = t.versions
    last = conn.execute(sa().select(sa().func.max(v.c.version)).where(v.c.model == name)).scalar()
    return int(last or 0) + 1


def require_active(name: str, current: int | None) -> int:
    """The active version a rollback starts from, or :class:`ConflictError` when there is none."""
    if current is None:
        raise ConflictError(f"Model {name!r} has no active version to roll back.")
    return current


def rollback_target(conn: Any, t: Tables, name: str, current: int) -> int:
    """The most recent previously active version, other than ``current``, not itself rolled back.

    Raises:
        ConflictError: there is none.
    """
    e, v = t.events, t.versions
    statuses = {
        ver.version: ver.status
        for ver in (version_from_row(r) for r in conn.execute(v.select().where(v.c.model == name)).mappings())
    }
    recent = (
        conn.execute(
            sa()
            .select(e.c.version)
            .where((e.c.model == name) & e.c.action.in_(("activate", "rollback")))
            .order_by(e.c.id.desc())
        )
        .scalars()
        .all()
    )
    target = next(
        (ver for ver in recent if ver is not None and ver != current and statuses.get(ver) != "rolled_back"),
        None,
    )
    if target is None:
        raise ConflictError(f"Model {name!r} has no earlier version to roll back to (active: {current}).")
    return int(target)


def _model_from_row(row: Any, versions: int) -> ModelInfo:
    return ModelInfo(
        name=row["name"],
        active_version=row["active_version"],
        canary_version=row["canary_version"],
        canary_percent=float(row["canary_percent"] or 0.0),
        versions=int(versions),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def version_from_row(row: Any) -> VersionInfo:
    """A :class:`VersionInfo` from a ``serve_model_versions`` row (labels are JSON text)."""
    return VersionInfo(
        model=row["model"],
        version=int(row["version"]),
        run_path=row["run_path"],
        variant=row["variant"],
        manifest_sha256=row["manifest_sha256"],
        signed=bool(row["signed"]),
        key_id=row["key_id"],
        labels=list(json.loads(row["labels"])),
        status=row["status"],
        registered_at=row["registered_at"],
        registered_by=row["registered_by"],
    )
