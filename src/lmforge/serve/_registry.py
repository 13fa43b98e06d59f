"""The model registry: named models, numbered immutable versions, activation, canary and rollback.

A version is a run directory (and a pinned variant) verified when it is registered
(signature and file hashes, see :func:`lmforge.guard.trust_run`); the manifest's SHA-256 is
recorded, and a version whose run changed since is refused when it is loaded. Every change
is a row in ``serve_model_events`` and a record in the audit log.

Rollback undoes the last change of what serves traffic: with a canary running, it stops the
canary (the candidate is marked ``rolled_back``); otherwise it re-activates the most recent
previously active version that was not itself rolled back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import RunDirError
from lmforge.serve._db import Tables, now
from lmforge.serve._errors import ConflictError, NotFoundError, ServeError
from lmforge.serve._names import name_problem

__all__ = ["ModelInfo", "ModelRegistry", "VersionInfo", "resolve_variant", "run_directory"]

FP32 = "fp32"


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


def resolve_variant(run: Path, variant: str | None) -> str:
    """The variant a version pins: ``variant``, else the run's selected one, else fp32.

    Raises:
        RunDirError: the run has no trained model or no such variant (the message lists them).
    """
    from lmforge.compress._predictor import available_variants, read_selected

    if variant is None:
        selected = read_selected(run)
        variant = selected["variant"] if selected else FP32
    if variant == FP32:
        if not (run / "model" / "lmforge_model.json").is_file():
            raise RunDirError(
                f"{run} has no trained model (model/lmforge_model.json); run `lmforge train` first."
            )
        return FP32
    have = available_variants(run)
    if variant not in have:
        raise RunDirError(
            f"{run} has no compressed variant {variant!r}. Available: {', '.join([FP32, *have])}."
        )
    return variant


def _labels(run: Path, variant: str) -> list[str]:
    folder = run / "model" if variant == FP32 else run / "compressed" / variant
    try:
        meta = json.loads((folder / "lmforge_model.json").read_text(encoding="utf-8"))
        labels = meta["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{folder} has no readable lmforge_model.json with a label list.") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) < 2:
        raise RunDirError(f"{folder}/lmforge_model.json must list at least two string labels.")
    return labels


def run_directory(path: str | Path) -> Path:
    """``path`` as an existing run directory (absolute), or :class:`RunDirError` saying why not."""
    try:
        run = Path(path).expanduser().resolve()
        exists = run.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, ~unknown-user, names too long...
        raise RunDirError(f"{str(path)[:200]!r} is not a usable path: {exc}") from None
    if not exists:
        raise RunDirError(f"Run directory {run} does not exist.")
    return run


def manifest_sha256(run: Path) -> str:
    """SHA-256 of ``RUN/manifest.json`` (what a signature covers)."""
    return hashlib.sha256((run / "manifest.json").read_bytes()).hexdigest()


class ModelRegistry:
    """Register, list, activate, canary and roll back model versions in the registry database.

    Args:
        engine: SQLAlchemy engine (see :func:`lmforge.serve._db.connect`).
        tables: its tables.
        audit: the audit log admin actions go to, or None.
    """

    def __init__(self, engine: Any, tables: Tables, audit: Any = None) -> None:
        self.engine = engine
        self.t = tables
        self.audit = audit

    # -- reading ---------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        """Every model, by name."""
        sa = _sa()
        m, v = self.t.models, self.t.versions
        counts = sa.select(v.c.model, sa.func.count().label("n")).group_by(v.c.model).subquery()
        query = (
            sa.select(m, counts.c.n)
            .select_from(m.outerjoin(counts, m.c.name == counts.c.model))
            .order_by(m.c.name)
        )
        with self.engine.connect() as conn:
            return [_model(r, r["n"] or 0) for r in conn.execute(query).mappings()]

    def get_model(self, name: str) -> ModelInfo:
        """One model. Raises :class:`NotFoundError` (listing the names) when there is none."""
        with self.engine.connect() as conn:
            return self._model(conn, name)

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first."""
        v = self.t.versions
        with self.engine.connect() as conn:
            self._model(conn, name)
            rows = conn.execute(v.select().where(v.c.model == name).order_by(v.c.version)).mappings()
            return [_version(r) for r in rows]

    def get_version(self, name: str, version: int) -> VersionInfo:
        with self.engine.connect() as conn:
            self._model(conn, name)
            return self._version(conn, name, version)

    def history(self, name: str) -> list[dict[str, Any]]:
        """The model's events, oldest first."""
        e = self.t.events
        with self.engine.connect() as conn:
            self._model(conn, name)
            rows = conn.execute(e.select().where(e.c.model == name).order_by(e.c.id)).mappings()
            return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def _model(self, conn: Any, name: str) -> ModelInfo:
        m, v = self.t.models, self.t.versions
        row = conn.execute(m.select().where(m.c.name == name)).mappings().first()
        if row is None:
            names = [r for (r,) in conn.execute(_sa().select(m.c.name).order_by(m.c.name))]
            raise NotFoundError(f"No model named {name[:80]!r}. Registered: {', '.join(names) or 'none'}.")
        n = conn.execute(
            _sa().select(_sa().func.count()).select_from(v).where(v.c.model == name)
        ).scalar_one()
        return _model(row, n)

    def _version(self, conn: Any, name: str, version: int) -> VersionInfo:
        v = self.t.versions
        row = (
            conn.execute(v.select().where((v.c.model == name) & (v.c.version == version))).mappings().first()
        )
        if row is None:
            have = [
                r
                for (r,) in conn.execute(
                    _sa().select(v.c.version).where(v.c.model == name).order_by(v.c.version)
                )
            ]
            raise NotFoundError(
                f"Model {name!r} has no version {version}. Versions: {', '.join(map(str, have)) or 'none'}."
            )
        return _version(row)

    # -- writing ---------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        run_path: str | Path,
        *,
        variant: str | None = None,
        public_key: Any = None,
        allow_unsigned: bool = False,
        actor: str,
    ) -> VersionInfo:
        """Verify a run and record it as the next version of ``name`` (the model is created if new).

        Raises:
            ServeError: a malformed name.
            RunDirError: no such run, model or variant.
            IntegrityError: the run is unsigned (without ``allow_unsigned``), wrongly signed or tampered with
                (see :func:`lmforge.guard.trust_run`: ``public_key``, else ``$LMFORGE_PUBLIC_KEY``, else the
                user's own key checks a signature).
        """
        from lmforge.guard import trust_run

        if (problem := name_problem(name)) is not None:
            raise ServeError(problem)
        run = run_directory(run_path)
        check = trust_run(run, public_key, allow_unsigned=allow_unsigned)
        pinned = resolve_variant(run, variant)
        labels = _labels(run, pinned)
        digest = manifest_sha256(run)
        m, v = self.t.models, self.t.versions
        stamp = now()
        with self.engine.begin() as conn:
            if conn.execute(m.select().where(m.c.name == name)).first() is None:
                conn.execute(
                    m.insert().values(
                        name=name,
                        created_at=stamp,
                        updated_at=stamp,
                        active_version=None,
                        canary_version=None,
                        canary_percent=0.0,
                    )
                )
            last = conn.execute(_sa().select(_sa().func.max(v.c.version)).where(v.c.model == name)).scalar()
            number = int(last or 0) + 1
            row = {
                "model": name,
                "version": number,
                "run_path": str(run),
                "variant": pinned,
                "manifest_sha256": digest,
                "signed": bool(check.signature_checked),
                "key_id": check.key_id,
                "labels": json.dumps(labels),
                "status": "registered",
                "registered_at": stamp,
                "registered_by": actor,
            }
            conn.execute(v.insert().values(**row))
            conn.execute(m.update().where(m.c.name == name).values(updated_at=stamp))
            self._event(
                conn,
                name,
                "register",
                number,
                None,
                actor,
                {"run": str(run), "variant": pinned, "signed": row["signed"]},
            )
        self._audit(
            actor,
            "model.register",
            f"{name}:{number}",
            {
                "run": str(run),
                "variant": pinned,
                "manifest_sha256": digest,
                "signed": row["signed"],
                "signer_key_id": check.key_id,
            },
        )
        return _version(row)

    def activate(self, name: str, version: int, *, actor: str) -> ModelInfo:
        """Make ``version`` the one serving all traffic (a running canary of it is promoted)."""
        m, v = self.t.models, self.t.versions
        with self.engine.begin() as conn:
            info = self._model(conn, name)
            self._version(conn, name, version)
            previous = info.active_version
            values: dict[str, Any] = {"active_version": version, "updated_at": now()}
            if info.canary_version is not None:
                values.update(canary_version=None, canary_percent=0.0)
                if info.canary_version != version:
                    self._set_status(conn, name, info.canary_version, "registered")
            if previous is not None and previous != version:
                self._set_status(conn, name, previous, "retired")
            conn.execute(m.update().where(m.c.name == name).values(**values))
            conn.execute(
                v.update().where((v.c.model == name) & (v.c.version == version)).values(status="active")
            )
            self._event(conn, name, "activate", version, previous, actor, {})
            info = self._model(conn, name)
        self._audit(actor, "model.activate", f"{name}:{version}", {"previous": previous})
        return info

    def set_canary(self, name: str, version: int, percent: float, *, actor: str) -> ModelInfo:
        """Send ``percent`` % of ``name``'s traffic to ``version`` (0 stops the canary).

        Raises:
            ServeError: percent outside 0..100.
            ConflictError: no active version, or ``version`` is the active one.
        """
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
            raise ServeError(f"Canary percent must be between 0 and 100, got {percent!r}.")
        m = self.t.models
        with self.engine.begin() as conn:
            info = self._model(conn, name)
            self._version(conn, name, version)
            if percent == 0:
                self._end_canary(conn, name, info.canary_version, "registered")
                self._event(conn, name, "canary_stop", info.canary_version, None, actor, {})
                action_details: dict[str, Any] = {"stopped": info.canary_version}
                info = self._model(conn, name)
            else:
                if info.active_version is None:
                    raise ConflictError(
                        f"Model {name!r} has no active version to compare a canary with; "
                        f"activate one first (POST /v1/models/{name}/versions/N/activate)."
                    )
                if version == info.active_version:
                    raise ConflictError(
                        f"Version {version} of {name!r} is already active; a canary must be another version."
                    )
                if info.canary_version is not None and info.canary_version != version:
                    self._set_status(conn, name, info.canary_version, "registered")
                conn.execute(
                    m.update()
                    .where(m.c.name == name)
                    .values(canary_version=version, canary_percent=float(percent), updated_at=now())
                )
                self._set_status(conn, name, version, "canary")
                self._event(conn, name, "canary", version, info.active_version, actor, {"percent": percent})
                info = self._model(conn, name)
                action_details = {"percent": float(percent), "stable": info.active_version}
        self._audit(actor, "model.canary", f"{name}:{version}", action_details)
        return info

    def rollback(
        self, name: str, *, actor: str, reason: str = "requested", only_canary: int | None = None
    ) -> tuple[ModelInfo, dict[str, Any]] | None:
        """Undo the last change of what serves traffic (see the module docstring).

        Args:
            only_canary: act only if this version is the running canary (automatic rollback:
                someone may have changed the canary since it was judged); None otherwise.

        Returns:
            The model's new state and what was done: ``{"action": "canary_aborted" | "reverted",
            "from_version", "to_version", "reason"}``; None when ``only_canary`` no longer runs.

        Raises:
            ConflictError: nothing to roll back to.
        """
        m = self.t.models
        with self.engine.begin() as conn:
            info = self._model(conn, name)
            if only_canary is not None and info.canary_version != only_canary:
                return None
            if info.canary_version is not None:
                self._end_canary(conn, name, info.canary_version, "rolled_back")
                done = {
                    "action": "canary_aborted",
                    "from_version": info.canary_version,
                    "to_version": info.active_version,
                    "reason": reason,
                }
            else:
                current = info.active_version
                target = self._rollback_target(conn, name, current)
                self._set_status(conn, name, current, "rolled_back")  # type: ignore[arg-type]
                self._set_status(conn, name, target, "active")
                conn.execute(
                    m.update().where(m.c.name == name).values(active_version=target, updated_at=now())
                )
                done = {"action": "reverted", "from_version": current, "to_version": target, "reason": reason}
            self._event(
                conn,
                name,
                "rollback",
                done["to_version"],
                done["from_version"],
                actor,
                {"kind": done["action"], "reason": reason},
            )
            info = self._model(conn, name)
        self._audit(actor, "model.rollback", f"{name}:{done['from_version']}", done)
        return info, done

    def rollback_target(self, name: str) -> int | None:
        """The version :meth:`rollback` would activate now; None when it would only stop the canary.

        Raises:
            ConflictError: nothing to roll back to.
        """
        with self.engine.connect() as conn:
            info = self._model(conn, name)
            if info.canary_version is not None:
                return None
            return self._rollback_target(conn, name, info.active_version)

    def _rollback_target(self, conn: Any, name: str, current: int | None) -> int:
        e = self.t.events
        if current is None:
            raise ConflictError(f"Model {name!r} has no active version to roll back.")
        statuses = {ver.version: ver.status for ver in self._versions(conn, name)}
        recent = (
            conn.execute(
                _sa()
                .select(e.c.version)
                .where((e.c.model == name) & e.c.action.in_(("activate", "rollback")))
                .order_by(e.c.id.desc())
            )
            .scalars()
            .all()
        )
        target = next(
            (
                ver
                for ver in recent
                if ver is not None and ver != current and statuses.get(ver) != "rolled_back"
            ),
            None,
        )
        if target is None:
            raise ConflictError(f"Model {name!r} has no earlier version to roll back to (active: {current}).")
        return int(target)

    def _versions(self, conn: Any, name: str) -> list[VersionInfo]:
        v = self.t.versions
        return [_version(r) for r in conn.execute(v.select().where(v.c.model == name)).mappings()]

    def _end_canary(self, conn: Any, name: str, version: int | None, status: str) -> None:
        """No canary for ``name`` any more; the version that was one (if any) gets ``status``."""
        if version is not None:
            self._set_status(conn, name, version, status)
        m = self.t.models
        conn.execute(
            m.update().where(m.c.name == name).values(canary_version=None, canary_percent=0.0, updated_at=now())
        )

    def _set_status(self, conn: Any, name: str, version: int, status: str) -> None:
        v = self.t.versions
        conn.execute(v.update().where((v.c.model == name) & (v.c.version == version)).values(status=status))

    def _event(
        self,
        conn: Any,
        name: str,
        action: str,
        version: int | None,
        from_version: int | None,
        actor: str,
        details: dict[str, Any],
    ) -> None:
        conn.execute(
            self.t.events.insert().values(
                model=name,
                action=action,
                version=version,
                from_version=from_version,
                actor=actor,
                at=now(),
                details=json.dumps(details),
            )
        )

    def _audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(actor, action, target, details)


def _sa() -> Any:
    import sqlalchemy

    return sqlalchemy


def _model(row: Any, versions: int) -> ModelInfo:
    return ModelInfo(
        name=row["name"],
        active_version=row["active_version"],
        canary_version=row["canary_version"],
        canary_percent=float(row["canary_percent"] or 0.0),
        versions=int(versions),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _version(row: Any) -> VersionInfo:
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
