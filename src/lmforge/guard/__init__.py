"""guard: the safety layer every stage uses: PII, encryption at rest, audit log, signed runs.

- :mod:`lmforge.guard.pii`: validated recognizers (EMAIL, PHONE, CN_ID, BANK_CARD, IP, URL,
  PASSPORT) and redaction under a :class:`PrivacyPolicy` (mask, hash or drop).
- :class:`Encryptor` / :class:`KeyRing`: AES-256-GCM with key ids and rotation.
- :class:`AuditLog`: append-only JSONL hash chain; :meth:`AuditLog.verify` names the first bad record.
- :func:`sign_run` / :func:`verify_run`: Ed25519 over ``manifest.json`` plus a re-hash of every file
  (symlinks refused); :func:`auto_sign` / :func:`trust_run` / :func:`trust_before_rewrite`: the
  policy the CLI applies (sign what you build with your key, refuse unsigned or tampered runs
  wherever a model is loaded unless allowed, verify a signed run before re-signing it);
  :class:`FileStamps`: proof that a file read after verification is the file verified.
- :func:`scan_model_file`: refuses pickle-based and malformed weight files without unpickling.

guard holds no model code: it sits below every stage, so each can redact, encrypt, audit or
verify. The reports that need a model or the catalog (fairness, compliance) are
:mod:`lmforge.evaluate`'s.

Importing this package is cheap (standard library only); ``cryptography`` loads when a key is
used, and is installed with ``pip install 'lmforge[guard]'``.
"""

from lmforge.guard._audit import (
    ACTIONS,
    AUDIT_KEY_ENV,
    AUDIT_LOG_ENV,
    AuditLog,
    AuditVerification,
    audit_log_from_env,
    default_actor,
)
from lmforge.guard._crypto import (
    KEY_ENV,
    Encryptor,
    KeyRing,
    decrypt_file,
    encrypt_file,
    key_id,
    load_encryptor,
)
from lmforge.guard._errors import CryptoKeyError, GuardError, IntegrityError, UnsafeModelError
from lmforge.guard._integrity import FileStamps
from lmforge.guard._modelscan import ModelFileReport, scan_model_dir, scan_model_file
from lmforge.guard._signing import (
    SIGNATURE,
    RunVerification,
    generate_signing_key,
    load_private_key,
    load_public_key,
    public_key_id,
    sign_run,
    verify_run,
)
from lmforge.guard._trust import (
    AUTO_SIGN_ENV,
    PUBLIC_KEY_ENV,
    SIGNING_KEY_ENV,
    auto_sign,
    default_signing_key,
    trust_before_rewrite,
    trust_run,
    trusted_public_key,
)
from lmforge.guard.pii import PrivacyPolicy, RedactionResult, detect, redact, redact_texts, scan_texts

__all__ = [
    "ACTIONS",
    "AUDIT_KEY_ENV",
    "AUDIT_LOG_ENV",
    "AUTO_SIGN_ENV",
    "KEY_ENV",
    "PUBLIC_KEY_ENV",
    "SIGNATURE",
    "SIGNING_KEY_ENV",
    "AuditLog",
    "AuditVerification",
    "CryptoKeyError",
    "Encryptor",
    "FileStamps",
    "GuardError",
    "IntegrityError",
    "KeyRing",
    "ModelFileReport",
    "PrivacyPolicy",
    "RedactionResult",
    "RunVerification",
    "UnsafeModelError",
    "audit_log_from_env",
    "auto_sign",
    "decrypt_file",
    "default_actor",
    "default_signing_key",
    "detect",
    "encrypt_file",
    "generate_signing_key",
    "key_id",
    "load_encryptor",
    "load_private_key",
    "load_public_key",
    "public_key_id",
    "redact",
    "redact_texts",
    "scan_model_dir",
    "scan_model_file",
    "scan_texts",
    "sign_run",
    "trust_before_rewrite",
    "trust_run",
    "trusted_public_key",
    "verify_run",
]
