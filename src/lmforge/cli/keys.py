"""`lmforge keys create|list|revoke`: API keys of the HTTP API, in the registry database."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from lmforge.cli._common import dump, say

if TYPE_CHECKING:
    from lmforge.serve import ServeSettings

_RAW = argparse.RawDescriptionHelpFormatter
EXAMPLE = """examples:
  lmforge keys create dashboard --role predict --rate 20   # prints the token once
  lmforge keys create ops --role admin
  lmforge keys list
  lmforge keys revoke 3f9a0c1d2e4b

Roles: predict (predict, feedback, metrics) and admin (everything; implies predict). Tokens are
stored only as their SHA-256; a lost token cannot be shown again: revoke it and create another.
Creating and revoking keys is recorded in the audit log (STATE/audit.jsonl or $LMFORGE_AUDIT_LOG)."""


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", dest="state_dir", default=None, help="state folder (default: ./.lmforge)")
    p.add_argument("--registry-url", default=None, help="registry database URL (default: STATE/registry.db)")
    p.add_argument(
        "--audit-log", default=None, help="audit log (default: $LMFORGE_AUDIT_LOG, else STATE/audit.jsonl)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="create, list or revoke API keys of `lmforge serve`",
        epilog=EXAMPLE,
        formatter_class=_RAW,
    )
    keys_sub = p.add_subparsers(dest="keys_verb", metavar="ACTION", required=True)
    q = keys_sub.add_parser(
        "create",
        help="create a key and print its token once",
        formatter_class=_RAW,
        epilog="example: lmforge keys create dashboard --role predict --rate 20",
    )
    q.add_argument("name", help="who or what uses the key")
    q.add_argument("--role", choices=("predict", "admin"), default="predict", help="(default: predict)")
    q.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests per second for this key (default: the server's auth.rate_per_s)",
    )
    add_store_args(q)
    q.set_defaults(func=create)
    q = keys_sub.add_parser(
        "list", help="list keys (never their tokens)", epilog="example: lmforge keys list"
    )
    q.add_argument("--active", action="store_true", help="leave out revoked keys")
    add_store_args(q)
    q.set_defaults(func=list_keys)
    q = keys_sub.add_parser(
        "revoke", help="revoke a key for good", epilog="example: lmforge keys revoke 3f9a0c1d2e4b"
    )
    q.add_argument("key_id", help="the key's id (see `lmforge keys list`)")
    add_store_args(q)
    q.set_defaults(func=revoke)


def _settings(args: argparse.Namespace) -> ServeSettings:
    from lmforge.serve import load_settings

    return load_settings(
        None, state_dir=args.state_dir, registry_url=args.registry_url, audit_log=args.audit_log
    )


def create(args: argparse.Namespace) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import create_key, open_stores

    with open_stores(_settings(args)) as stores:
        token, key = create_key(stores, args.name, args.role, actor=default_actor(), rate_per_s=args.rate)
    print(
        f"created API key {key.key_id} ({key.name!r}, role {key.role}); its token, shown only this once:",
        file=sys.stderr,
    )
    say(token)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    from lmforge.serve import open_stores

    with open_stores(_settings(args)) as stores:
        keys = stores.keys.list(include_revoked=not args.active)
    dump([k.to_dict() for k in keys])
    return 0


def revoke(args: argparse.Namespace) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import open_stores, revoke_key

    with open_stores(_settings(args)) as stores:
        key = revoke_key(stores, args.key_id, actor=default_actor())
    say(
        f"revoked API key {key.key_id} ({key.name!r}); a running server refuses it within auth.key_cache_s seconds"
    )
    return 0
