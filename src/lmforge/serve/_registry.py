"""The model registry: named models, numbered immutable versions, activation, canary and rollback.

A version is a run directory (and a pinned variant) verified when it is registered
(signature and file hashes, see :func:`lmforge.guard.trust_run`); the manifest's SHA-256 is
recorded, and a version whose run changed since is refused when it is loaded. Every change
is a row in ``serve_model_events`` and a record in the audit log.

Rollback undoes the last change of what serves traffic: with a canary running, it stops the
canary (the candidate is marked ``rolled_back``); otherwise it re-activates the most recent
previously active version that was not itself rolled back.

The reads are in :mod:`lmforge.serve._registry_queries`, what a version takes from its run in
:mod:`lmforge.serve._runs`; this module holds the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.guard import trust_run
from lmforge.serve._db import Tables, now
from lmforge.serve._errors import ConflictError, ServeError
from lmforge.serve._names import name_problem
from lmforge.serve._registry_queries import (
    ModelInfo,
    VersionInfo,
    find_model,
    find_version,
    history,
    list_models,
    list_versions,
    next_version,
    require_active,
    rollback_target,
    version_from_row,
)
from lmforge.serve._runs import read_labels, resolve_variant, run_directory

__all__ = ["ModelRegistry"]


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
        with self.engine.connect() as conn:
            return list_models(conn, self.t)

    def get_model(self, name: str) -> ModelInfo:
        """One model. Raises :class:`NotFoundError` (listing the names) when there is none."""
        with self.engine.connect() as conn:
            return find_model(conn, self.t, name)

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first."""
        with self.engine.connect() as conn:
            return list_versions(conn, self.t, name)

    def get_version(self, name: str, version: int) -> VersionInfo:
        with self.engine.connect() as conn:
            find_model(conn, self.t, name)
            return find_version(conn, self.t, name, version)

    def history(self, name: str) -> list[dict[str, Any]]:
        """The model's events, oldest first."""
        with self.engine.connect() as conn:
            return history(conn, self.t, name)

    def rollback_target(self, name: str) -> int | None:
        """The version :meth:`rollback` would activate now; None when it would only stop the canary.

        Raises:
            ConflictError: nothing to roll back to.
        """
        with self.engine.connect() as conn:
            info = find_model(conn, self.t, name)
            if info.canary_version is not None:
                return None
            return rollback_target(conn, self.t, name, require_active(name, info.active_version))

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

        The manifest recorded is the one verified (its SHA-256 as :func:`trust_run` read it).

        Raises:
            ServeError: a malformed name.
            ConfigError: a malformed variant name (a path separator, ``..``, hidden).
            RunDirError: no such run, model or variant, or the variant folder is a symlink.
            IntegrityError: the run is unsigned (without ``allow_unsigned``), wrongly signed or tampered with
                (see :func:`lmforge.guard.trust_run`: ``public_key``, else ``$LMFORGE_PUBLIC_KEY``, else the
                user's own key checks a signature).
        """
        if (problem := name_problem(name)) is not None:
            raise ServeError(problem)
        run = run_directory(run_path)
        pinned = resolve_variant(run, variant)  # a malformed or symlinked variant is refused before any hashing
        check = trust_run(run, public_key, allow_unsigned=allow_unsigned)
        labels = read_labels(run, pinned)
        digest = check.manifest_sha256
        m, v = self.t.models, self.t.versions
        stamp = now()
        with self.engine.begin() as conn:
            self._create_if_new(conn, name, stamp)
            number = next_version(conn, self.t, name)
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
        return version_from_row(row)

    def activate(self, name: str, version: int, *, actor: str) -> ModelInfo:
        """Make ``version`` the one serving all traffic (a running canary of it is promoted)."""
        m, v = self.t.models, self.t.versions
        with self.engine.begin() as conn:
            info = find_model(conn, self.t, name)
            find_version(conn, self.t, name, version)
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
            info = find_model(conn, self.t, name)
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
            info = find_model(conn, self.t, name)
            find_version(conn, self.t, name, version)
            if percent == 0:
                self._end_canary(conn, name, info.canary_version, "registered")
                self._event(conn, name, "canary_stop", info.canary_version, None, actor, {})
                action_details: dict[str, Any] = {"stopped": info.canary_version}
                info = find_model(conn, self.t, name)
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
                info = find_model(conn, self.t, name)
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
            info = find_model(conn, self.t, name)
            if only_canary is not None and info.canary_version != only_canary:
                return None
            done: dict[str, Any]
            if info.canary_version is not None:
                self._end_canary(conn, name, info.canary_version, "rolled_back")
                done = {
                    "action": "canary_aborted",
                    "from_version": info.canary_version,
                    "to_version": info.active_version,
                    "reason": reason,
                }
            else:
                current = require_active(name, info.active_version)
                target = rollback_target(conn, self.t, name, current)
                self._set_status(conn, name, current, "rolled_back")
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
            info = find_model(conn, self.t, name)
        self._audit(actor, "model.rollback", f"{name}:{done['from_version']}", done)
        return info, done

    # -- one transaction's steps -----------------------------------------------------------------
    def _create_if_new(self, conn: Any, name: str, stamp: str) -> None:
        """Add model ``name`` (no version active, no canary) unless it exists."""
        m = self.t.models
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

    def _end_canary(self, conn: Any, name: str, version: int | None, status: str) -> None:
        """No canary for ``name`` any more; the version that was one (if any) gets ``status``."""
        if version is not None:
            self._set_status(conn, name, version, status)
        m = self.t.models
        conn.execute(
            m.update()
            .where(m.c.name == name)
            .values(canary_version=None, canary_percent=0.0, updated_at=now())
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
