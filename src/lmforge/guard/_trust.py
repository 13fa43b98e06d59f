"""Which runs a process trusts: sign what this user builds, verify everything that loads a run.

The CLI stages that change a run (``run``, ``prepare``, ``train``, ``evaluate``, ``compress``,
``fairness``) re-sign it at the end with the user's signing key, so the signature always
covers the manifest they just rewrote. The key is ``$LMFORGE_SIGNING_KEY``, else
``~/.config/lmforge/signing.key`` (created on first use, mode 0600, public half next to it as
``signing.key.pub``). Set ``LMFORGE_AUTO_SIGN=0`` to turn this off. A re-signature vouches for
every file of the run, also those the stage did not write, so such a stage first verifies a
signed run it starts from (:func:`trust_before_rewrite`) and, before signing, checks that
nothing it did not write changed meanwhile (:meth:`RunVerification.check_unchanged`): a
tampered run is refused, never laundered into a fresh signature.

Everything that loads a model from a run calls :func:`trust_run` first (``lmforge predict``,
``serve`` and its registry, Ray replicas, the monitor's reference, ``evaluate``, ``fairness``,
``monitor report`` / ``reference``): a signed run must verify against ``--public-key``,
``$LMFORGE_PUBLIC_KEY`` or the user's own public key; an unsigned run (or a signed one with no
public key at hand) is refused unless unsigned runs are allowed explicitly (its files are then
still checked against the manifest); a tampered run, or one signed by another key than the one
given, is always refused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lmforge.errors import MissingExtraError, RunDirError
from lmforge.guard._errors import CryptoKeyError, IntegrityError
from lmforge.guard._signing import SIGNATURE, RunVerification, generate_signing_key, sign_run, verify_run
from lmforge.rundir import RunDir

__all__ = [
    "AUTO_SIGN_ENV",
    "PUBLIC_KEY_ENV",
    "SIGNING_KEY_ENV",
    "auto_sign",
    "default_signing_key",
    "trust_before_rewrite",
    "trust_run",
    "trusted_public_key",
]

logger = logging.getLogger(__name__)

SIGNING_KEY_ENV = "LMFORGE_SIGNING_KEY"
PUBLIC_KEY_ENV = "LMFORGE_PUBLIC_KEY"
AUTO_SIGN_ENV = "LMFORGE_AUTO_SIGN"


def default_signing_key() -> Path:
    """``$XDG_CONFIG_HOME/lmforge/signing.key`` (``~/.config`` when XDG_CONFIG_HOME is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lmforge" / "signing.key"


def _signing_key(create: bool) -> tuple[Path | None, bool]:
    explicit = os.environ.get(SIGNING_KEY_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise CryptoKeyError(
                f"${SIGNING_KEY_ENV} names {path}, which does not exist. Create it with "
                f"`lmforge key signing {path}`, or unset ${SIGNING_KEY_ENV} to use {default_signing_key()}."
            )
        return path, False
    path = default_signing_key()
    if path.is_file():
        return path, False
    if not create:
        return None, False
    path.parent.mkdir(parents=True, exist_ok=True)
    generate_signing_key(path)
    return path, True


def auto_sign(run: RunDir | str | Path) -> dict[str, Any] | None:
    """Sign ``run`` with the user's key (created on first use); None when auto-signing is off.

    Returns:
        ``{"key": path, "key_id": ..., "created": bool}``, or None when ``$LMFORGE_AUTO_SIGN``
        is ``0`` or the ``cryptography`` package is missing (a warning says so).
    """
    if os.environ.get(AUTO_SIGN_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    try:
        key, created = _signing_key(create=True)
        if key is None:  # pragma: no cover - create=True always yields a key
            return None
        record = sign_run(run, key)
    except MissingExtraError as exc:
        logger.warning("not signing %s: %s", run, exc)
        return None
    return {"key": str(key), "key_id": record["key_id"], "created": created}


def trusted_public_key(explicit: str | Path | None = None) -> Path | None:
    """The public key to verify runs with: ``explicit``, ``$LMFORGE_PUBLIC_KEY``, or the user's own."""
    for source, origin in ((explicit, "--public-key"), (os.environ.get(PUBLIC_KEY_ENV), f"${PUBLIC_KEY_ENV}")):
        if source:
            path = Path(source)
            if not path.is_file():
                raise CryptoKeyError(f"Public key not found: {path} (from {origin}).")
            return path
    own, _ = _signing_key(create=False)
    if own is not None:
        pub = own.with_name(own.name + ".pub")
        if pub.is_file():
            return pub
    return None


def trust_run(
    run: RunDir | str | Path, public_key: str | Path | None = None, *, allow_unsigned: bool = False
) -> RunVerification:
    """Verify ``run`` before a model is loaded from it (see the module docstring for the policy).

    Returns:
        The :class:`~lmforge.guard.RunVerification`.

    Raises:
        IntegrityError: unsigned (and not allowed), signed by another key, tampered, or unsafe model files.
        CryptoKeyError: a named public key file is missing.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.root.is_dir():
        raise RunDirError(f"Run directory {run.root} does not exist.")
    if not run.manifest_path.is_file():
        raise RunDirError(
            f"{run.root} has no manifest.json, so it is not a trained run: make one with "
            f"`lmforge run --out {run.root}` (or `lmforge prepare` then `lmforge train`)."
        )
    key = trusted_public_key(public_key)
    signed = (run.root / SIGNATURE).is_file()
    if signed and key is None:
        if not allow_unsigned:
            raise IntegrityError(
                f"{run.root} is signed, but there is no public key to check it with: pass --public-key KEY.pub "
                f"or set ${PUBLIC_KEY_ENV} (or --allow-unsigned to check its files only)."
            )
        logger.warning("%s is signed but no public key is known here: checking its files only", run.root)
    return verify_run(run, key if signed else None, allow_unsigned=allow_unsigned)


def trust_before_rewrite(run: RunDir | str | Path, public_key: str | Path | None = None) -> RunVerification | None:
    """Verify a signed run before a stage rewrites and re-signs it; None for a new or unsigned run.

    The policy is :func:`trust_run`'s without ``allow_unsigned``: a signed run must verify with
    ``public_key`` (else ``$LMFORGE_PUBLIC_KEY``, else the user's own key). A folder without a
    manifest or signature has nothing to verify: the stage creates the run, or adopts an
    unsigned one (``lmforge sign`` would too). After the stage, call
    :meth:`~lmforge.guard.RunVerification.check_unchanged` with what it wrote before signing.

    Raises:
        IntegrityError: the run is signed by another key, signed with no key to check it,
            tampered with, or ships unsafe model files.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.manifest_path.is_file() or not os.path.lexists(run.root / SIGNATURE):
        return None
    return trust_run(run, public_key, allow_unsigned=False)
