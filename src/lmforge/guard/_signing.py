"""Signed run directories: an Ed25519 signature over ``manifest.json``, checked with every file.

``manifest.json`` lists the sha256 of every artifact of a run (``manifest.files``), so one
signature over the manifest's bytes covers them all. :func:`sign_run` writes
``RUN/signature.json``::

    {"format": "lmforge-signature/1", "algorithm": "ed25519", "manifest_sha256": "...",
     "key_id": "...", "signed_at": "...", "signer": "...", "signature": "<base64>"}

where the signature covers every other field (canonical JSON). :func:`verify_run` checks the
signature with a public key, then re-hashes every file the manifest lists and names each
tampered, missing or extra file, and every symlink or special file (see
:mod:`lmforge.guard._integrity`); with ``scan_models`` it also refuses pickle-based or malformed
files under ``model/`` and ``compressed/``. Every load path calls it before loading a run, and
:meth:`RunVerification.check_unchanged` after, so the bytes loaded are the bytes verified.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import RunDirError
from lmforge.guard._crypto import write_private
from lmforge.guard._errors import CryptoKeyError, IntegrityError, UnsafeModelError
from lmforge.guard._integrity import FileStamps, run_file_problems
from lmforge.guard._modelscan import scan_model_file
from lmforge.rundir import MANIFEST, RunDir, atomic_write_json, atomic_write_text

__all__ = [
    "PASSPHRASE_ENV",
    "SIGNATURE",
    "RunVerification",
    "generate_signing_key",
    "load_private_key",
    "load_public_key",
    "public_key_id",
    "sign_run",
    "verify_run",
]

SIGNATURE = "signature.json"
PASSPHRASE_ENV = "LMFORGE_SIGNING_PASSPHRASE"
_FORMAT = "lmforge-signature/1"
_PAYLOAD = ("format", "algorithm", "manifest_sha256", "key_id", "signed_at", "signer")
_MODEL_DIRS = ("model", "compressed")
_PURPOSE = "Signing run directories"


def _ed25519() -> Any:
    return require("cryptography.hazmat.primitives.asymmetric.ed25519", extra="guard", purpose=_PURPOSE)


def _serialization() -> Any:
    return require("cryptography.hazmat.primitives.serialization", extra="guard", purpose=_PURPOSE)


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _raw_public(public_key: Any) -> bytes:
    ser = _serialization()
    return bytes(public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw))


def public_key_id(public_key: Any) -> str:
    """A 16-hex-digit name of an Ed25519 public key (sha256 of its raw bytes)."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


# -- keys ----------------------------------------------------------------------------------------
def generate_signing_key(private_path: str | Path, public_path: str | Path | None = None) -> str:
    """Create an Ed25519 key pair: private PEM (mode 0600) and public PEM (``PRIVATE.pub``).

    The private key is encrypted with ``$LMFORGE_SIGNING_PASSPHRASE`` when that is set.
    Refuses to overwrite an existing private key.

    Returns:
        The key id.
    """
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_name(private_path.name + ".pub")
    if private_path.exists():
        raise CryptoKeyError(f"{private_path} already exists; refusing to overwrite a key. Choose another path.")
    ser = _serialization()
    key = _ed25519().Ed25519PrivateKey.generate()
    passphrase = os.environ.get(PASSPHRASE_ENV)
    encryption = ser.BestAvailableEncryption(passphrase.encode("utf-8")) if passphrase else ser.NoEncryption()
    write_private(private_path, key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, encryption))
    public_pem = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    atomic_write_text(public_path, public_pem.decode("ascii"))
    return public_key_id(key.public_key())


def load_private_key(source: str | Path | Any) -> Any:
    """An Ed25519 private key from a PEM file (or the key object itself)."""
    ed = _ed25519()
    if isinstance(source, ed.Ed25519PrivateKey):
        return source
    path = Path(source)
    if not path.is_file():
        raise CryptoKeyError(f"Signing key not found: {path}. Create one with `lmforge key signing {path}`.")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = _serialization().load_pem_private_key(
            path.read_bytes(), password=passphrase.encode("utf-8") if passphrase else None
        )
    except TypeError:
        raise CryptoKeyError(
            f"Signing key {path} is encrypted; set ${PASSPHRASE_ENV} to its passphrase."
            if not passphrase else f"Signing key {path} is not encrypted; unset ${PASSPHRASE_ENV}."
        ) from None
    except ValueError:
        raise CryptoKeyError(
            f"Cannot read signing key {path}: not a PEM private key, or the passphrase in ${PASSPHRASE_ENV} is wrong."
        ) from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise CryptoKeyError(f"Signing key {path} is a {type(key).__name__}; lmforge signs with Ed25519 keys only.")
    return key


def load_public_key(source: str | Path | bytes | Any) -> Any:
    """An Ed25519 public key from a PEM file, PEM bytes, raw 32 bytes, or the key object."""
    ed = _ed25519()
    if isinstance(source, ed.Ed25519PublicKey):
        return source
    if isinstance(source, ed.Ed25519PrivateKey):
        return source.public_key()
    where = "the public key"
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise CryptoKeyError(f"Public key not found: {path}. It is written next to the private key as KEY.pub.")
        data, where = path.read_bytes(), str(path)
    else:
        data = bytes(source)
    if len(data) == 32 and not data.startswith(b"-----"):
        return ed.Ed25519PublicKey.from_public_bytes(data)
    try:
        key = _serialization().load_pem_public_key(data)
    except ValueError:
        raise CryptoKeyError(f"Cannot read {where}: not a PEM public key.") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise CryptoKeyError(f"{where} is a {type(key).__name__}; lmforge verifies Ed25519 signatures only.")
    return key


# -- signing -------------------------------------------------------------------------------------
def _as_run(run: RunDir | str | Path) -> RunDir:
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.root.is_dir():
        raise RunDirError(f"Run directory {run.root} does not exist.")
    if not run.manifest_path.is_file():
        raise IntegrityError(f"{run.root} has no {MANIFEST}; only a run directory made by lmforge can be signed or "
                             "verified.")
    return run


def sign_run(run: RunDir | str | Path, private_key: str | Path | Any, *, signer: str | None = None) -> dict[str, Any]:
    """Sign ``RUN/manifest.json`` and write ``RUN/signature.json``.

    The run's files are checked against the manifest first: a signature vouches for what is
    on disk, so a run that already differs from its manifest is not signed.

    Args:
        run: The run directory.
        private_key: PEM file of an Ed25519 private key (see :func:`generate_signing_key`) or the key.
        signer: Who signs (recorded in the signature); the process owner when None.

    Returns:
        The signature record written.

    Raises:
        IntegrityError: the run does not match its manifest (each file named).
        CryptoKeyError: the key is missing, unreadable or not Ed25519.
    """
    from lmforge.guard._audit import default_actor

    run = _as_run(run)
    key = load_private_key(private_key)
    manifest_bytes = run.manifest_path.read_bytes()
    problems, _ = run_file_problems(run, manifest_bytes)
    if problems:
        raise IntegrityError(
            f"Refusing to sign {run.root}: it does not match its manifest:\n" + "\n".join(f"  - {p}" for p in problems)
            + "\nRe-run the stage that writes these files (it updates the manifest), then sign."
        )
    payload = {
        "format": _FORMAT,
        "algorithm": "ed25519",
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "key_id": public_key_id(key.public_key()),
        "signed_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "signer": signer or default_actor(),
    }
    record = {**payload, "signature": base64.b64encode(key.sign(_canonical(payload))).decode("ascii")}
    atomic_write_json(run.root / SIGNATURE, record)
    return record


@dataclass(frozen=True)
class RunVerification:
    """Outcome of a :func:`verify_run` that passed."""

    run: str
    signed: bool
    """A signature.json is present."""
    signature_checked: bool
    """The signature was verified with a public key (False only when unsigned runs were allowed)."""
    key_id: str | None
    signed_at: str | None
    signer: str | None
    files_checked: int
    model_files_scanned: int
    manifest_sha256: str = ""
    """sha256 of the ``manifest.json`` bytes that were verified."""
    stamps: FileStamps | None = field(default=None, repr=False, compare=False)
    """What was hashed, as it was on disk then (see :meth:`check_unchanged`)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stamps"}

    def check_unchanged(self, *, skip: Iterable[str] = ()) -> None:
        """Refuse what was read since verification if a file it hashed (or a model folder) changed.

        Call it after loading a model from the run (with its weights copied into memory): then
        the loaded bytes are the verified ones. A stage calls it before re-signing, with
        ``skip`` naming what the stage wrote itself (``eval``, ``MODEL_CARD.md``...).

        Raises:
            IntegrityError: naming each file or folder replaced, written to, or with entries
                added or removed since verification.
        """
        changed = self.stamps.changed(skip) if self.stamps is not None else []
        if changed:
            root = Path(self.run)
            what = [f"{rel}/ (a folder: an entry was added, removed or renamed)" if (root / rel).is_dir()
                    else f"{rel} (replaced, written to or removed)" for rel in changed]
            raise IntegrityError(
                f"Run {self.run} changed after it was verified, so what was read from it is not what was "
                f"verified ({len(changed)} changed):\n" + "\n".join(f"  - {w}" for w in what)
                + "\nNothing read from it is used. Find out who writes into the run, then verify and load again."
            )


def _signature_problems(run: RunDir, manifest_bytes: bytes, public_key: Any) -> tuple[list[str], dict[str, Any]]:
    path = run.root / SIGNATURE
    try:
        record = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, OSError):
        return [f"{SIGNATURE} is damaged (not a JSON object)"], {}
    if not isinstance(record, dict) or any(not isinstance(record.get(k), str) for k in (*_PAYLOAD, "signature")):
        return [f"{SIGNATURE} is damaged (fields {', '.join(_PAYLOAD)}, signature expected)"], {}
    if record["format"] != _FORMAT or record["algorithm"] != "ed25519":
        return [f"{SIGNATURE} has format {record['format']!r} / algorithm {record['algorithm']!r}; "
                f"expected {_FORMAT!r} / 'ed25519'"], record
    if public_key is None:
        return [], record
    expected_id = public_key_id(public_key)
    if record["key_id"] != expected_id:
        return [f"the run is signed by key {record['key_id'][:16]}, not by the verifying key {expected_id}: "
                "use the signer's public key, or the run was re-signed by someone else"], record
    try:
        signature = base64.b64decode(record["signature"], validate=True)
    except (binascii.Error, ValueError):
        return [f"{SIGNATURE}: the signature is not base64 (corrupt signature)"], record
    invalid = require("cryptography.exceptions", extra="guard", purpose=_PURPOSE).InvalidSignature
    try:
        public_key.verify(signature, _canonical({k: record[k] for k in _PAYLOAD}))
    except invalid:
        return [f"{SIGNATURE}: the signature does not verify (corrupt signature, or its fields were edited)"], record
    if record["manifest_sha256"] != hashlib.sha256(manifest_bytes).hexdigest():
        return [f"{MANIFEST} was modified after signing (its sha256 differs from the signed one)"], record
    return [], record


def verify_run(
    run: RunDir | str | Path,
    public_key: str | Path | bytes | Any | None,
    allow_unsigned: bool = False,
    *,
    scan_models: bool = True,
) -> RunVerification:
    """Refuse a run that is unsigned, wrongly signed, tampered with, or ships unsafe model files.

    Args:
        run: The run directory.
        public_key: The signer's Ed25519 public key (PEM file, PEM/raw bytes or key object).
            None only together with ``allow_unsigned`` (the signature is then not checked).
        allow_unsigned: Accept a run without ``signature.json`` (its files are still checked
            against the manifest, which catches accidents but not an attacker).
        scan_models: Also refuse pickle-based or malformed files under ``model/`` and ``compressed/``.

    Returns:
        What was checked.

    Raises:
        IntegrityError: every problem found: signature, and each tampered, missing or extra
            file by name (hidden files in ``model/`` and ``compressed/<variant>/`` count as
            extra), each symlink or special file outside ``logs/`` and ``checkpoints/``, and each
            unsafe model file.
    """
    run = _as_run(run)
    stamps = FileStamps(run.root)
    stamps.add(run.manifest_path)  # before it is read: a later load refuses a manifest changed since
    manifest_bytes = run.manifest_path.read_bytes()
    signed = (run.root / SIGNATURE).is_file()
    key = load_public_key(public_key) if public_key is not None else None
    problems: list[str] = []
    record: dict[str, Any] = {}
    if not signed and not allow_unsigned:
        problems.append(f"the run is unsigned (no {SIGNATURE}); sign it with `lmforge sign {run.root} --key KEY`, "
                        "or allow unsigned runs explicitly (--allow-unsigned)")
    elif signed:
        if key is None and not allow_unsigned:
            problems.append("the run is signed but no public key was given to check it; pass --public-key")
        else:
            sig_problems, record = _signature_problems(run, manifest_bytes, key)
            problems.extend(sig_problems)
    file_problems, checked = run_file_problems(run, manifest_bytes, stamps)
    problems.extend(file_problems)
    scanned = 0
    if scan_models:
        for rel, kind in run.walk():
            if kind != "file" or rel.split("/")[0] not in _MODEL_DIRS:
                continue
            scanned += 1
            try:
                scan_model_file(run.root / rel)
            except UnsafeModelError as exc:
                problems.append(f"unsafe model file: {rel}: {str(exc).split(': ', 1)[-1]}")
    if problems:
        raise IntegrityError(
            f"Run {run.root} failed verification ({len(problems)} problem(s)):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return RunVerification(
        str(run.root), signed, signed and key is not None, record.get("key_id"), record.get("signed_at"),
        record.get("signer"), checked, scanned, hashlib.sha256(manifest_bytes).hexdigest(), stamps,
    )
