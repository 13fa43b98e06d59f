"""Encryption at rest: AES-256-GCM with a key ring, so keys can rotate without losing old data.

A token is ``b"LMFE" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext + tag``.
The header names the key, so :meth:`Encryptor.decrypt` picks the right one from the ring,
and the header is authenticated along with the data: a wrong key, a modified token or a
token bound to other associated data fails with :class:`CryptoKeyError` or
:class:`IntegrityError`, never returns garbage.

Keys come from an environment variable (``LMFORGE_ENCRYPTION_KEY``: base64 or hex keys,
comma-separated, the first encrypts) or a key-ring file made by ``lmforge key encryption``
(JSON, mode 0600). A key file that group or other users can access is refused, not read
(:func:`read_private`). Key material never appears in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.guard._errors import CryptoKeyError, GuardError, IntegrityError

__all__ = [
    "KEY_ENV",
    "Encryptor",
    "KeyRing",
    "decrypt_file",
    "encrypt_file",
    "key_id",
    "load_encryptor",
    "read_private",
    "write_atomic",
    "write_private",
]

KEY_ENV = "LMFORGE_ENCRYPTION_KEY"
_MAGIC = b"LMFE"
_VERSION = 1
_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = len(_MAGIC) + 1 + _ID_BYTES
_KEY_BYTES = 32
_FORMAT = "lmforge-keyring/1"
_CREATE_HINT = "Create a key ring with `lmforge key encryption KEYS.json`, or set $" + KEY_ENV + "."


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def key_id(key: bytes) -> str:
    """A public 16-hex-digit name of a key (a domain-separated hash; reveals nothing usable)."""
    return hashlib.sha256(b"lmforge-key-id\0" + key).hexdigest()[: 2 * _ID_BYTES]


def _decode_key(text: str, where: str) -> bytes:
    value = text.strip()
    raw: bytes | None = None
    if len(value) == 2 * _KEY_BYTES:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != _KEY_BYTES:
        # Never echo the value: it may be a real key with a typo.
        raise CryptoKeyError(
            f"{where} is not a {_KEY_BYTES}-byte key in base64 or hex ({len(value)} characters given). "
            + _CREATE_HINT
        )
    return raw


def _aesgcm() -> Any:
    return require("cryptography.hazmat.primitives.ciphers.aead", extra="guard", purpose="Encryption at rest").AESGCM


class KeyRing:
    """Encryption keys by id: the primary one encrypts, every one decrypts.

    Rotation adds a new primary and keeps the old keys for decryption; revoking drops a key
    for good (data still encrypted under it can no longer be read: re-encrypt it first).
    """

    def __init__(self, keys: dict[str, bytes], primary: str, *, created: dict[str, str] | None = None,
                 revoked: dict[str, str] | None = None) -> None:
        self._keys = dict(keys)
        self.primary = primary
        self.created = dict(created or {})
        self.revoked = dict(revoked or {})
        if primary not in self._keys:
            raise CryptoKeyError(f"The primary key {primary} is not in the key ring; the key ring is damaged.")

    def __repr__(self) -> str:
        return f"KeyRing(primary={self.primary!r}, ids={sorted(self._keys)!r})"

    @property
    def ids(self) -> list[str]:
        """Ids of the usable keys, the primary first."""
        return [self.primary] + sorted(k for k in self._keys if k != self.primary)

    def key(self, kid: str) -> bytes:
        """The key named ``kid``; a revoked or unknown id is a :class:`CryptoKeyError`."""
        if kid in self._keys:
            return self._keys[kid]
        if kid in self.revoked:
            raise CryptoKeyError(
                f"The data was encrypted with key {kid}, which was revoked on {self.revoked[kid]}; it cannot be "
                "decrypted any more. Restore that key from a backup if the data must be read."
            )
        raise CryptoKeyError(
            f"The data was encrypted with key {kid}, which is not in this key ring (keys: {', '.join(self.ids)}). "
            "Load the key ring (or $" + KEY_ENV + " entry) that holds it; after a rotation keep the old keys."
        )

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def generate(cls) -> KeyRing:
        """A ring with one fresh random 256-bit key."""
        raw = secrets.token_bytes(_KEY_BYTES)
        kid = key_id(raw)
        return cls({kid: raw}, kid, created={kid: _now()})

    def rotate(self, new_key: bytes | None = None) -> str:
        """Add a (fresh random) key and make it the primary; returns its id. Old keys still decrypt."""
        raw = secrets.token_bytes(_KEY_BYTES) if new_key is None else new_key
        if len(raw) != _KEY_BYTES:
            raise CryptoKeyError(f"A new key must be {_KEY_BYTES} bytes, got {len(raw)}.")
        kid = key_id(raw)
        if kid in self.revoked:
            raise CryptoKeyError(f"Key {kid} was revoked; it cannot come back. Generate a new one.")
        self._keys[kid] = raw
        self.created.setdefault(kid, _now())
        self.primary = kid
        return kid

    def revoke(self, kid: str) -> None:
        """Remove key ``kid`` for good. The primary cannot be revoked: rotate first."""
        if kid not in self._keys:
            raise CryptoKeyError(f"No key {kid} in the key ring (keys: {', '.join(self.ids)}).")
        if kid == self.primary:
            raise CryptoKeyError(
                f"Key {kid} is the primary key; rotate to a new key first (`lmforge key encryption KEYS.json`), "
                "re-encrypt the data, then revoke it."
            )
        del self._keys[kid]
        self.revoked[kid] = _now()

    # -- files and environment -------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the ring as JSON, readable by its owner only (mode 0600), atomically."""
        path = Path(path)
        data = {
            "format": _FORMAT,
            "primary": self.primary,
            "keys": [
                {"id": kid, "key": base64.urlsafe_b64encode(self._keys[kid]).decode("ascii"),
                 "created": self.created.get(kid)}
                for kid in self.ids
            ],
            "revoked": [{"id": kid, "revoked": when} for kid, when in sorted(self.revoked.items())],
        }
        write_private(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        """Read a ring written by :meth:`save`.

        Raises:
            CryptoKeyError: the file is missing, damaged, or group or other users can access it.
        """
        path = Path(path)
        if not path.is_file():
            raise CryptoKeyError(f"Key file not found: {path}. {_CREATE_HINT}")
        try:
            data = json.loads(read_private(path, "Key file").decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CryptoKeyError(f"Key file {path} is not a JSON key ring; it is damaged. {_CREATE_HINT}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("keys"), list):
            raise CryptoKeyError(f"Key file {path} is not an lmforge key ring ({_FORMAT}). {_CREATE_HINT}")
        keys: dict[str, bytes] = {}
        created: dict[str, str] = {}
        for i, entry in enumerate(data["keys"], 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise CryptoKeyError(f"Key file {path}: entry {i} has no key; the file is damaged.")
            raw = _decode_key(entry["key"], f"Key file {path}, entry {i},")
            kid = key_id(raw)
            if entry.get("id") not in (None, kid):
                raise CryptoKeyError(f"Key file {path}: entry {i} does not match its id {entry.get('id')}; the file "
                                     "was edited or is damaged.")
            keys[kid] = raw
            if isinstance(entry.get("created"), str):
                created[kid] = entry["created"]
        revoked = {r["id"]: r.get("revoked", "") for r in data.get("revoked", []) if isinstance(r, dict) and "id" in r}
        primary = data.get("primary")
        if not isinstance(primary, str) or primary not in keys:
            raise CryptoKeyError(f"Key file {path} names primary key {primary!r}, which it does not hold.")
        return cls(keys, primary, created=created, revoked=revoked)

    @classmethod
    def from_env(cls, var: str = KEY_ENV) -> KeyRing:
        """Keys from ``$var``: base64 or hex, comma-separated; the first one encrypts."""
        value = os.environ.get(var, "")
        if not value.strip():
            raise CryptoKeyError(f"No encryption key: ${var} is not set. {_CREATE_HINT}")
        raws = [_decode_key(part, f"${var} entry {i}") for i, part in enumerate(value.split(","), 1) if part.strip()]
        keys = {key_id(raw): raw for raw in raws}
        return cls(keys, key_id(raws[0]))


class Encryptor:
    """AES-256-GCM over a :class:`KeyRing`.

    Each call draws a fresh random 96-bit nonce, which is safe for up to about 2**32 messages
    per key (NIST SP 800-38D); rotate well before that.
    """

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"Encryptor(primary={self.keyring.primary!r})"

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """Encrypt ``plaintext`` under the primary key.

        Args:
            plaintext: The bytes to protect.
            associated_data: Context bound to the token without being stored in it (e.g.
                ``b"monitor.texts"``); decryption needs the same bytes.
        """
        if not isinstance(plaintext, bytes | bytearray | memoryview):
            raise TypeError(f"encrypt() needs bytes, got {type(plaintext).__name__}; use encrypt_text for str.")
        kid = self.keyring.primary
        header = _MAGIC + bytes([_VERSION]) + bytes.fromhex(kid)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = bytes(_aesgcm()(self.keyring.key(kid)).encrypt(nonce, bytes(plaintext), header + associated_data))
        return header + nonce + sealed

    def key_id_of(self, token: bytes) -> str:
        """Id of the key a token was encrypted with."""
        if len(token) < _HEADER + _NONCE_BYTES + 16 or not token.startswith(_MAGIC):
            raise IntegrityError(
                "The data is not an lmforge-encrypted token (bad header or too short); it was not encrypted "
                "by lmforge, or it is truncated."
            )
        if token[len(_MAGIC)] != _VERSION:
            raise IntegrityError(f"Encrypted token format version {token[len(_MAGIC)]} is not supported "
                                 f"(this lmforge reads version {_VERSION}).")
        return token[len(_MAGIC) + 1 : _HEADER].hex()

    def decrypt(self, token: bytes, associated_data: bytes = b"") -> bytes:
        """The plaintext of ``token``.

        Raises:
            IntegrityError: not an lmforge token, or the key is right but the data was modified.
            CryptoKeyError: the key is not in the ring, was revoked, or is wrong.
        """
        token = bytes(token)
        kid = self.key_id_of(token)
        key = self.keyring.key(kid)
        header, nonce, sealed = token[:_HEADER], token[_HEADER : _HEADER + _NONCE_BYTES], token[_HEADER + _NONCE_BYTES :]
        invalid_tag = require("cryptography.exceptions", extra="guard", purpose="Encryption at rest").InvalidTag
        try:
            return bytes(_aesgcm()(key).decrypt(nonce, sealed, header + associated_data))
        except invalid_tag:
            raise IntegrityError(
                f"Decryption with key {kid} failed authentication: the data was modified or truncated, it was "
                "bound to other associated data, or the key ring holds a different key under that id."
            ) from None

    def encrypt_text(self, text: str, associated_data: bytes = b"") -> str:
        """Encrypt a string; returns URL-safe base64 text (for a database column or a JSON field)."""
        return base64.urlsafe_b64encode(self.encrypt(text.encode("utf-8"), associated_data)).decode("ascii")

    def decrypt_text(self, token: str, associated_data: bytes = b"") -> str:
        """Inverse of :meth:`encrypt_text`."""
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise IntegrityError("The encrypted text is not base64; it is damaged or was never encrypted.") from None
        return self.decrypt(raw, associated_data).decode("utf-8")

    def needs_rotation(self, token: bytes) -> bool:
        """True when ``token`` is under a key other than the current primary."""
        return self.key_id_of(bytes(token)) != self.keyring.primary

    def reencrypt(self, token: bytes, associated_data: bytes = b"") -> bytes:
        """Decrypt with whichever key made ``token`` and encrypt again under the primary."""
        return self.encrypt(self.decrypt(token, associated_data), associated_data)


def load_encryptor(key_file: str | Path | None = None, *, env: str = KEY_ENV) -> Encryptor:
    """An :class:`Encryptor` from a key-ring file when given, else from ``$env``.

    Raises:
        CryptoKeyError: no key in either place, or a malformed one.
    """
    ring = KeyRing.load(key_file) if key_file is not None else KeyRing.from_env(env)
    return Encryptor(ring)


def encrypt_file(src: str | Path, dst: str | Path, encryptor: Encryptor) -> None:
    """Encrypt a whole file (e.g. a prepared split) into ``dst``, atomically. Reads it into memory."""
    data = Path(src).read_bytes()
    write_atomic(Path(dst), encryptor.encrypt(data, b"lmforge-file"))


def decrypt_file(src: str | Path, dst: str | Path, encryptor: Encryptor) -> None:
    """Inverse of :func:`encrypt_file`; ``dst`` is written only when decryption succeeded."""
    token = Path(src).read_bytes()
    try:
        plain = encryptor.decrypt(token, b"lmforge-file")
    except GuardError as exc:
        raise type(exc)(f"{src}: {exc}") from None
    write_atomic(Path(dst), plain)


def write_atomic(path: str | Path, data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` through a temporary file created with ``mode`` (less the umask), fsync, rename.

    The file is never readable with a looser mode than ``mode``, not even for a moment (a
    ``chmod`` after writing would leave a window).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_private(path: str | Path, data: bytes) -> None:
    """Write a secret (a key file) atomically, readable and writable by its owner only (0600)."""
    path = Path(path)
    write_atomic(path, data, 0o600)
    os.chmod(path, 0o600)  # in case the umask was stricter than needed, make the mode exact


def read_private(path: str | Path, what: str = "Key file") -> bytes:
    """The bytes of a secret file, refused when its owner is not the only one who can access it.

    A key that group or other users can read may already be copied, so it is not used quietly:
    the mode is checked on the opened file (no window between the check and the read).

    Args:
        path: The key file.
        what: What it is, for the message (e.g. "Signing key").

    Raises:
        CryptoKeyError: the mode gives group or others any access; the message names the path,
            the mode and the fix.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            raise CryptoKeyError(
                f"{what} {path} has mode {mode:04o}: group or other users can access it, so it is refused. "
                f"Run `chmod 600 {path}`, and rotate the key if someone else may have read it."
            )
        return fh.read()
