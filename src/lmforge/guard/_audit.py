"""Append-only audit log: who did what to what, and when, in a hash chain.

One JSON record per line::

    {"seq": 7, "time": "2026-11-20T10:04:05.123456+00:00", "actor": "ana", "action": "model.activate",
     "target": "runs/demo", "details": {...}, "alg": "sha256", "prev": "<hash of record 6>", "hash": "..."}

``hash`` covers every other field, ``prev`` is the hash of the record before (64 zeros for the
first), and ``PATH.head`` holds the seq and hash of the last record. :meth:`AuditLog.verify`
finds an edited record (its hash no longer matches), a removed, inserted or reordered one
(seq or prev breaks) and a removed tail (the head no longer matches).

A plain hash chain only shows careless tampering: whoever can write the file can recompute
every hash, and cut records off the end and rewrite (or delete) the head to match, so
**without a key, truncation cannot be detected**. With a key (``$LMFORGE_AUDIT_KEY``) the
hashes are HMAC-SHA256 and the head carries an HMAC of its own (``mac``): a forged chain or a
rewritten head needs the key, and verifying a keyed log requires the head. What a key cannot
show is a rollback to an older copy of both files; keep copies elsewhere (ship the log to
another machine) for that. Keep the key away from the machine's ordinary users.

The log and its head are created readable by their owner only (0600); a log that exists
keeps its mode, and the head follows the log's mode.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lmforge.guard._crypto import write_atomic
from lmforge.guard._errors import CryptoKeyError, GuardError, IntegrityError

try:  # POSIX advisory locks keep concurrent appenders from forking the chain
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ACTIONS",
    "AUDIT_KEY_ENV",
    "AUDIT_LOG_ENV",
    "AuditLog",
    "AuditVerification",
    "audit_log_from_env",
    "default_actor",
]

AUDIT_LOG_ENV = "LMFORGE_AUDIT_LOG"
AUDIT_KEY_ENV = "LMFORGE_AUDIT_KEY"
GENESIS = "0" * 64
_HEAD_DOMAIN = b"lmforge-audit-head\0"  # a head MAC can never pass for a record hash, nor one for the other

ACTIONS = (
    "model.register",
    "model.activate",
    "model.rollback",
    "model.canary",
    "key.create",
    "key.rotate",
    "key.revoke",
    "data.export",
    "data.redact",
    "run.sign",
)
"""The admin actions lmforge records; other stages may add dotted names of their own."""

_ACTION = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")
_SECRET_KEY = re.compile(r"(?:^|_|-)(?:key|secret|password|passphrase|token|salt|credential)s?(?:$|_|-)",
                         re.IGNORECASE)
_FIELDS = ("seq", "time", "actor", "action", "target", "details", "alg", "prev", "hash")


def default_actor() -> str:
    """``$LMFORGE_ACTOR``, else the login name of the process owner."""
    actor = os.environ.get("LMFORGE_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _scrub(value: Any) -> Any:
    """Replace values under secret-looking keys, so a caller cannot log a key by mistake."""
    if isinstance(value, Mapping):
        return {str(k): "[REDACTED]" if _SECRET_KEY.search(str(k)) and not str(k).endswith(("_id", "_ids"))
                else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _canonical(record: Mapping[str, Any]) -> bytes:
    body = {k: record[k] for k in _FIELDS if k != "hash" and k in record}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _head_mac(key: bytes, seq: int, last_hash: str) -> str:
    return hmac.new(key, _HEAD_DOMAIN + f"{seq}\0{last_hash}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditVerification:
    """Outcome of a successful :meth:`AuditLog.verify`."""

    path: str
    records: int
    last_hash: str
    keyed: bool
    """The chain is HMAC-keyed (forging it needs the key)."""
    head_checked: bool
    """``PATH.head`` was present and matched the last record (a removed tail would show).
    Always True for a keyed log, whose head is required and checked with the key."""


class AuditLog:
    """An append-only JSONL audit log with a hash chain.

    Args:
        path: The log file (created on the first append).
        key: HMAC key of the chain; None for a plain SHA-256 chain.
    """

    def __init__(self, path: str | Path, *, key: bytes | None = None) -> None:
        self.path = Path(path)
        self._key = key

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, keyed={self._key is not None})"

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    def _digest(self, record: Mapping[str, Any]) -> str:
        body = _canonical(record)
        if record.get("alg") == "hmac-sha256":
            if self._key is None:
                raise CryptoKeyError(
                    f"{self.path} is HMAC-keyed; its records can only be checked with the key. Set ${AUDIT_KEY_ENV}."
                )
            return hmac.new(self._key, body, hashlib.sha256).hexdigest()
        return hashlib.sha256(body).hexdigest()

    def _write_head(self, fd: int, seq: int, last_hash: str) -> None:
        head: dict[str, Any] = {"seq": seq, "hash": last_hash}
        if self._key is not None:
            head["mac"] = _head_mac(self._key, seq, last_hash)
        # Readable by whoever may read the log, no more (0600 for a log lmforge created).
        mode = os.fstat(fd).st_mode & 0o777
        write_atomic(self.head_path, (json.dumps(head, indent=2) + "\n").encode("utf-8"), mode)

    # -- writing ---------------------------------------------------------------------------------
    def append(self, actor: str | None, action: str, target: str, details: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
        """Add one record and return it.

        Args:
            actor: Who did it (a user or service name); :func:`default_actor` when None.
            action: What, as a dotted name, e.g. ``model.activate`` (see :data:`ACTIONS`).
            target: What it was done to (a run directory, a model name, a key id...).
            details: JSON-ready facts; values under keys such as ``key`` or ``password`` are
                replaced by ``[REDACTED]``.

        Raises:
            GuardError: a malformed action, or a log whose last record is damaged.
        """
        if not _ACTION.match(action or ""):
            raise GuardError(f"Audit action {action!r} must be a dotted lower-case name such as 'model.activate'.")
        actor = actor or default_actor()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 (an existing log keeps its mode): the log says who touched which key.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                seq, prev = self._tail(fh)
                record: dict[str, Any] = {
                    "seq": seq + 1,
                    "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
                    "actor": str(actor),
                    "action": action,
                    "target": str(target),
                    "details": _scrub(dict(details or {})),
                    "alg": "hmac-sha256" if self._key is not None else "sha256",
                    "prev": prev,
                }
                record["hash"] = self._digest(record)
                fh.seek(0, os.SEEK_END)
                fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                self._write_head(fh.fileno(), record["seq"], record["hash"])
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return record

    def _tail(self, fh: IO[bytes]) -> tuple[int, str]:
        """Seq and hash of the last record (0 and the genesis hash for an empty log)."""
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return 0, GENESIS
        step, pos, buf = 4096, end, b""
        while pos > 0:
            pos = max(0, pos - step)
            fh.seek(pos)
            buf = fh.read(end - pos)
            if buf.count(b"\n") >= 2 or pos == 0:
                break
        if not buf.endswith(b"\n"):
            raise IntegrityError(
                f"Cannot append to {self.path}: its last line is incomplete (an interrupted write or an edit). "
                "Run `lmforge audit verify` and restore the log from a backup."
            )
        last = buf[:-1].rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(last)
            return int(record["seq"]), str(record["hash"])
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(
                f"Cannot append to {self.path}: its last record is damaged. Run `lmforge audit verify`."
            ) from None

    # -- reading ---------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every record, as stored (without checking the chain: use :meth:`verify` for that)."""
        if not self.path.is_file():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def verify(self) -> AuditVerification:
        """Check every record, the chain between them and the head.

        With a key, the head is required and its MAC checked, so records cut off the end show
        even when the head was deleted or rewritten. Without a key a missing head is accepted
        (``head_checked`` is False) and a head can be forged: truncation cannot be detected.

        Raises:
            IntegrityError: naming the first bad record (its seq and line) and what is wrong
                with it: edited, removed, inserted, reordered; or a head that is missing (keyed
                log), forged or does not match the last record. Head problems carry
                ``tail=True``: the records verified, but the log may have been cut short.
            CryptoKeyError: the log is keyed and this object has no key.
        """
        if not self.path.is_file():
            if self.head_path.is_file():
                raise IntegrityError(f"Audit log {self.path} is missing but its head file exists: the log was removed.")
            raise IntegrityError(f"Audit log {self.path} does not exist.")
        prev, expected_seq, keyed = GENESIS, 1, None
        count = 0
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                where = f"{self.path} line {lineno}"
                if not raw.endswith(b"\n"):
                    raise IntegrityError(f"{where}: the last line is incomplete (truncated or edited).")
                if not raw.strip():
                    raise IntegrityError(f"{where}: blank line inside the log; records are one per line.")
                try:
                    record = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise IntegrityError(f"{where}: not a JSON record; the log was edited or damaged.") from None
                if not isinstance(record, dict) or any(k not in record for k in _FIELDS):
                    raise IntegrityError(f"{where}: not an audit record (fields {', '.join(_FIELDS)} expected).")
                seq = record["seq"]
                where = f"{self.path} record seq {seq} (line {lineno})"
                if record["alg"] not in ("sha256", "hmac-sha256"):
                    raise IntegrityError(f"{where}: unknown hash algorithm {record['alg']!r}.")
                if self._key is not None and record["alg"] != "hmac-sha256":
                    raise IntegrityError(f"{where}: unkeyed record in a log verified with a key; it was forged "
                                         "or the log was written without the key.")
                keyed = record["alg"] == "hmac-sha256" if keyed is None else keyed
                if not hmac.compare_digest(str(record["hash"]), self._digest(record)):
                    raise IntegrityError(f"{where} was edited: its hash does not match its content.")
                if seq != expected_seq:
                    if isinstance(seq, int) and seq > expected_seq:
                        what = f"record {expected_seq} is missing here (removed, or moved by a reordering)"
                    else:
                        what = "records were reordered or a record was inserted"
                    raise IntegrityError(f"{where}: expected seq {expected_seq}; {what}.")
                if record["prev"] != prev:
                    raise IntegrityError(
                        f"{where}: its prev hash does not match the record before it; a record was removed, "
                        "inserted or reordered."
                    )
                prev, expected_seq = record["hash"], expected_seq + 1
                count += 1
        head_checked = self._check_head(count, prev)
        return AuditVerification(str(self.path), count, prev, bool(keyed), head_checked)

    def _check_head(self, count: int, last_hash: str) -> bool:
        """True when the head matched; False when an unkeyed log has none. Raises on a bad head."""
        head_path = self.head_path
        if not head_path.is_file():
            if self._key is None:
                return False
            raise IntegrityError(
                f"{self.path}: its head file {head_path.name} is missing; a keyed log needs it to show that no "
                "records were cut off the end. Restore both files from a backup.", tail=True
            )
        try:
            head = json.loads(head_path.read_text(encoding="utf-8"))
            head_seq, head_hash = int(head["seq"]), str(head["hash"])
            head_mac = head.get("mac")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise IntegrityError(f"{head_path} is damaged; it should hold the last seq and hash.", tail=True) from None
        if self._key is not None and not (
            isinstance(head_mac, str) and hmac.compare_digest(head_mac, _head_mac(self._key, head_seq, head_hash))
        ):
            what = "has no MAC" if head_mac is None else "has a MAC that does not match the key"
            raise IntegrityError(
                f"{self.path}: its head file {head_path.name} {what}: it was rewritten without the key "
                "(or by an older lmforge), so the end of the log cannot be trusted.", tail=True
            )
        if head_seq > count:
            raise IntegrityError(
                f"{self.path}: the head records seq {head_seq} but the log ends at seq {count}: "
                f"record(s) {count + 1}..{head_seq} were removed from the end.", tail=True
            )
        if head_seq < count:
            raise IntegrityError(
                f"{self.path}: record seq {head_seq + 1} and later are not in the head file: they were appended "
                "by something other than lmforge, or the head was rolled back.", tail=True
            )
        if not hmac.compare_digest(head_hash, last_hash):
            raise IntegrityError(f"{self.path}: the last record does not match the head hash; it was replaced.",
                                 tail=True)
        return True


def audit_log_from_env(path: str | Path | None = None) -> AuditLog | None:
    """The audit log at ``path`` (or ``$LMFORGE_AUDIT_LOG``), keyed by ``$LMFORGE_AUDIT_KEY`` when set.

    Returns None when neither a path nor the variable is given (auditing is off).
    """
    target = path or os.environ.get(AUDIT_LOG_ENV)
    if not target:
        return None
    key = os.environ.get(AUDIT_KEY_ENV)
    if key is not None and len(key) < 16:
        raise CryptoKeyError(f"${AUDIT_KEY_ENV} must hold at least 16 characters (it holds {len(key)}).")
    return AuditLog(target, key=key.encode("utf-8") if key else None)
