"""Guard verbs: redact, sign, verify, audit verify, key, encrypt/decrypt, scan-model.

Each parses its arguments and calls one function of :mod:`lmforge.guard`; admin actions (key
changes, signing, redaction runs) are recorded in the audit log named by ``--audit-log`` or
``$LMFORGE_AUDIT_LOG`` when either is set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lmforge.cli._common import say
from lmforge.errors import ConfigError, DataError

_RAW = argparse.RawDescriptionHelpFormatter


def _add_audit_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audit-log", metavar="LOG.jsonl",
                   help="record this action in an audit log (default: $LMFORGE_AUDIT_LOG, if set)")


def _audit(args: argparse.Namespace, action: str, target: str, details: dict[str, Any]) -> None:
    from lmforge.guard import audit_log_from_env

    log = audit_log_from_env(getattr(args, "audit_log", None))
    if log is not None:
        log.append(None, action, target, details)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "redact", help="remove PII from a JSONL or CSV file", formatter_class=_RAW,
        description="Detect PII (EMAIL, PHONE, CN_ID, BANK_CARD, IP, URL, PASSPORT) in the text field of each "
        "record and replace it. Each output record keeps its fields and gains `entities`: "
        '[{"type", "start", "end"}] spans on the original text.',
        epilog="examples:\n  lmforge redact tickets.jsonl --output tickets.redacted.jsonl\n"
        "  lmforge redact reviews.csv --output clean.csv --mode hash --entities PHONE,EMAIL   "
        "(hash needs $LMFORGE_PII_SALT)",
    )
    p.add_argument("input", help="JSONL or CSV file")
    p.add_argument("--output", "-o", required=True, help="file to write (same format)")
    p.add_argument("--mode", choices=("mask", "hash", "drop"), default="mask",
                   help="mask: [PHONE]; hash: [PHONE:<keyed hash>]; drop: delete it (default: mask)")
    p.add_argument("--entities", help="comma-separated entity types to redact (default: all)")
    p.add_argument("--text-field", default="text", help="field or column holding the text (default: text)")
    p.add_argument("--format", dest="fmt", choices=("jsonl", "csv"), help="input format (default: from extension)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the input (default: utf-8)")
    _add_audit_arg(p)
    p.set_defaults(func=redact)
    _register_signing(sub)
    _register_keys(sub)
    p = sub.add_parser("scan-model", help="refuse pickle-based or malformed model files",
                       epilog="example: lmforge scan-model runs/demo/model")
    p.add_argument("paths", nargs="+", help="model files or folders")
    p.set_defaults(func=scan_model)


def _register_signing(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """sign, verify, audit verify."""
    p = sub.add_parser(
        "sign", help="sign a run directory's manifest (Ed25519)", formatter_class=_RAW,
        epilog="examples:\n  lmforge key signing ~/.lmforge/signing.key\n"
        "  lmforge sign runs/demo --key ~/.lmforge/signing.key",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--key", required=True, help="Ed25519 private key (PEM), made by `lmforge key signing`")
    _add_audit_arg(p)
    p.set_defaults(func=sign)

    p = sub.add_parser(
        "verify", help="check a run's signature, file hashes and model files", formatter_class=_RAW,
        description="Verify RUN/signature.json with a public key, re-hash every file listed in the manifest "
        "(naming each tampered, missing or extra file) and refuse pickle-based or malformed model files.",
        epilog="examples:\n  lmforge verify runs/demo --public-key ~/.lmforge/signing.key.pub\n"
        "  lmforge verify runs/demo --allow-unsigned      (file hashes only)",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--public-key", help="the signer's public key (PEM)")
    p.add_argument("--allow-unsigned", action="store_true", help="accept a run without a signature")
    p.add_argument("--no-model-scan", dest="scan_models", action="store_false",
                   help="skip the pickle / safetensors checks of model/ and compressed/")
    p.set_defaults(func=verify)

    p = sub.add_parser("audit", help="audit log tools", formatter_class=_RAW,
                       epilog="example: lmforge audit verify /var/log/lmforge/audit.jsonl")
    audit_sub = p.add_subparsers(dest="audit_verb", metavar="ACTION", required=True)
    q = audit_sub.add_parser("verify", help="check the hash chain of an audit log", formatter_class=_RAW,
                             epilog="example: lmforge audit verify audit.jsonl   (keyed logs need $LMFORGE_AUDIT_KEY)\n"
                             "exit 0: intact; 1: head missing, forged or behind (records cut off the end); "
                             "2: a broken chain or an error")
    q.add_argument("log", nargs="?", help="the log (default: $LMFORGE_AUDIT_LOG)")
    q.set_defaults(func=audit_verify)


def _register_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """key signing | encryption | revoke, encrypt, decrypt."""
    p = sub.add_parser("key", help="create, rotate or revoke keys", formatter_class=_RAW,
                       epilog="examples:\n  lmforge key signing signing.key\n  lmforge key encryption keys.json\n"
                       "  lmforge key revoke keys.json 3f9a0c1d2e4b5a69")
    key_sub = p.add_subparsers(dest="key_verb", metavar="ACTION", required=True)
    q = key_sub.add_parser("signing", help="create an Ed25519 key pair (KEY and KEY.pub)",
                           epilog="example: lmforge key signing signing.key   "
                           "(encrypted when $LMFORGE_SIGNING_PASSPHRASE is set)")
    q.add_argument("path", help="private key file to create (mode 0600); the public key goes to PATH.pub")
    _add_audit_arg(q)
    q.set_defaults(func=key_signing)
    q = key_sub.add_parser("encryption", help="create a key ring, or rotate: add a new primary key",
                           epilog="example: lmforge key encryption keys.json")
    q.add_argument("keyring", help="key ring file (created with mode 0600, or rotated when it exists)")
    _add_audit_arg(q)
    q.set_defaults(func=key_encryption)
    q = key_sub.add_parser("revoke", help="remove a key from a key ring for good",
                           epilog="example: lmforge key revoke keys.json 3f9a0c1d2e4b5a69")
    q.add_argument("keyring")
    q.add_argument("key_id")
    _add_audit_arg(q)
    q.set_defaults(func=key_revoke)

    for verb, helptext in (("encrypt", "encrypt a file (AES-256-GCM)"), ("decrypt", "decrypt a file")):
        q = sub.add_parser(verb, help=helptext, formatter_class=_RAW,
                           epilog=f"example: lmforge {verb} runs/demo/data/train.jsonl --output train.enc "
                           "--key-file keys.json   (or $LMFORGE_ENCRYPTION_KEY)")
        q.add_argument("input")
        q.add_argument("--output", "-o", required=True)
        q.add_argument("--key-file", help="key ring (default: keys from $LMFORGE_ENCRYPTION_KEY)")
        if verb == "decrypt":  # clear data leaving the encrypted store: recorded as data.export
            _add_audit_arg(q)
        q.set_defaults(func=encrypt if verb == "encrypt" else decrypt)


# -- handlers --------------------------------------------------------------------------------------
def redact(args: argparse.Namespace) -> int:
    from lmforge.guard.pii import PrivacyPolicy, redact_file

    entities = [e.strip().upper() for e in args.entities.split(",") if e.strip()] if args.entities else None
    policy = PrivacyPolicy(mode=args.mode, entities=entities)
    summary = redact_file(args.input, args.output, policy, text_field=args.text_field, fmt=args.fmt,
                          encoding=args.encoding)
    _audit(args, "data.redact", str(args.input), summary.to_dict())
    counts = ", ".join(f"{k} {v}" for k, v in summary.entity_counts.items()) or "no PII found"
    say(f"redacted {summary.records} records ({summary.records_with_pii} with PII: {counts}) -> {args.output}")
    return 0


def sign(args: argparse.Namespace) -> int:
    from lmforge.guard import sign_run

    record = sign_run(args.run, args.key)
    _audit(args, "run.sign", str(args.run), {"key_id": record["key_id"], "manifest_sha256": record["manifest_sha256"]})
    say(f"signed {args.run}/signature.json with key {record['key_id']}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from lmforge.guard import verify_run

    result = verify_run(args.run, args.public_key, args.allow_unsigned, scan_models=args.scan_models)
    if result.signature_checked:
        state = f"signature valid (key {result.key_id}, {result.signer}, {result.signed_at})"
    elif result.signed:
        state = "signed, signature NOT checked (no --public-key)"
    else:
        state = "UNSIGNED (allowed)"
    say(f"{args.run}: {state}; {result.files_checked} files match the manifest; "
        f"{result.model_files_scanned} model files scanned")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    """Exit 0: intact; 1: the records check out but the head is missing, forged or behind (the log
    may have been cut short); 2 (an error): a record was edited, removed or reordered, or no key."""
    from lmforge.guard import AUDIT_KEY_ENV, AUDIT_LOG_ENV, IntegrityError, audit_log_from_env

    log = audit_log_from_env(args.log)
    if log is None:
        raise ConfigError(f"Name the audit log: `lmforge audit verify LOG.jsonl`, or set ${AUDIT_LOG_ENV}.")
    try:
        result = log.verify()
    except IntegrityError as exc:
        if not exc.tail:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.keyed:
        head = "head matches"
    elif result.head_checked:
        head = f"head matches, but unkeyed: a truncated log with a rewritten head would pass; set ${AUDIT_KEY_ENV}"
    else:
        head = f"no head file and unkeyed: records removed from the end cannot be detected; set ${AUDIT_KEY_ENV}"
    say(f"{result.path}: {result.records} records, chain intact ({'HMAC-keyed' if result.keyed else 'sha256'}), "
        f"{head}")
    return 0


def key_signing(args: argparse.Namespace) -> int:
    from lmforge.guard import generate_signing_key

    kid = generate_signing_key(args.path)
    _audit(args, "key.create", kid, {"kind": "ed25519-signing", "path": str(args.path)})
    say(f"created signing key {kid}: {args.path} (private, keep it secret) and {args.path}.pub (share it)")
    return 0


def key_encryption(args: argparse.Namespace) -> int:
    from lmforge.guard import KeyRing

    path = Path(args.keyring)
    if path.exists():
        ring = KeyRing.load(path)
        old = ring.primary
        kid = ring.rotate()
        ring.save(path)
        _audit(args, "key.rotate", kid, {"kind": "aes-256-gcm", "keyring": str(path), "previous_id": old})
        say(f"rotated {path}: new primary key {kid}; {len(ring.ids) - 1} older key(s) kept for decryption")
    else:
        ring = KeyRing.generate()
        ring.save(path)
        _audit(args, "key.create", ring.primary, {"kind": "aes-256-gcm", "keyring": str(path)})
        say(f"created key ring {path} (mode 0600) with key {ring.primary}")
    return 0


def key_revoke(args: argparse.Namespace) -> int:
    from lmforge.guard import KeyRing

    ring = KeyRing.load(args.keyring)
    ring.revoke(args.key_id)
    ring.save(args.keyring)
    _audit(args, "key.revoke", args.key_id, {"kind": "aes-256-gcm", "keyring": str(args.keyring)})
    say(f"revoked key {args.key_id} in {args.keyring}")
    return 0


def encrypt(args: argparse.Namespace) -> int:
    from lmforge.guard import encrypt_file, load_encryptor

    if not Path(args.input).is_file():
        raise DataError(f"Input file not found: {args.input}")
    encrypt_file(args.input, args.output, load_encryptor(args.key_file))
    say(f"encrypted {args.input} -> {args.output}")
    return 0


def decrypt(args: argparse.Namespace) -> int:
    from lmforge.guard import decrypt_file, load_encryptor

    if not Path(args.input).is_file():
        raise DataError(f"Input file not found: {args.input}")
    decrypt_file(args.input, args.output, load_encryptor(args.key_file))
    _audit(args, "data.export", str(args.input), {"how": "decrypt", "output": str(args.output)})
    say(f"decrypted {args.input} -> {args.output}")
    return 0


def scan_model(args: argparse.Namespace) -> int:
    from lmforge.guard import scan_model_dir, scan_model_file

    n = 0
    for target in args.paths:
        reports = scan_model_dir(target) if Path(target).is_dir() else [scan_model_file(target)]
        n += len(reports)
    say(f"{n} file(s) scanned: no pickle, no malformed safetensors")
    return 0
