"""`lmforge registry register|list|activate|canary|rollback`: the model registry, offline."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lmforge.cli._common import dump, say
from lmforge.cli.keys import add_store_args

if TYPE_CHECKING:
    from lmforge.serve import ServeSettings

_RAW = argparse.RawDescriptionHelpFormatter
EXAMPLE = """examples:
  lmforge registry register sentiment runs/demo --public-key signing.key.pub --activate
  lmforge registry register sentiment runs/demo-v2 --variant onnx-int8-dynamic --allow-unsigned
  lmforge registry list
  lmforge registry list sentiment
  lmforge registry canary sentiment 2 10        # 10 % of traffic to version 2
  lmforge registry activate sentiment 2
  lmforge registry rollback sentiment

Works on the same database as `lmforge serve` (STATE/registry.db or --registry-url); a running
server picks changes up within its registry_poll_s. Changes are recorded in the audit log."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "registry",
        help="register, list, activate, canary or roll back model versions",
        epilog=EXAMPLE,
        formatter_class=_RAW,
    )
    reg_sub = p.add_subparsers(dest="registry_verb", metavar="ACTION", required=True)
    q = reg_sub.add_parser(
        "register",
        help="verify a run and add it as a new version of a model",
        formatter_class=_RAW,
        epilog="example: lmforge registry register sentiment runs/demo --activate "
        "--public-key signing.key.pub",
    )
    q.add_argument("name", help="model name")
    q.add_argument("run", help="run directory")
    q.add_argument(
        "--variant", default=None, help="compressed variant to pin, or fp32 (default: the selected one)"
    )
    q.add_argument("--activate", action="store_true", help="activate the new version")
    q.add_argument("--allow-unsigned", action="store_true", help="accept a run without a signature")
    q.add_argument(
        "--public-key", default=None, help="public key the run is signed with ($LMFORGE_PUBLIC_KEY)"
    )
    add_store_args(q)
    q.set_defaults(func=register_version)
    q = reg_sub.add_parser(
        "list", help="list models, or the versions of one", epilog="example: lmforge registry list sentiment"
    )
    q.add_argument("name", nargs="?", help="a model name (default: every model)")
    add_store_args(q)
    q.set_defaults(func=list_models)
    q = reg_sub.add_parser(
        "activate",
        help="make a version serve all traffic",
        epilog="example: lmforge registry activate sentiment 2",
    )
    q.add_argument("name")
    q.add_argument("version", type=int)
    add_store_args(q)
    q.set_defaults(func=activate)
    q = reg_sub.add_parser(
        "canary",
        help="send a share of traffic to a version (0 stops)",
        epilog="example: lmforge registry canary sentiment 2 10",
    )
    q.add_argument("name")
    q.add_argument("version", type=int)
    q.add_argument("percent", type=float)
    add_store_args(q)
    q.set_defaults(func=canary)
    q = reg_sub.add_parser(
        "rollback",
        help="stop the canary, or re-activate the previous version",
        epilog="example: lmforge registry rollback sentiment",
    )
    q.add_argument("name")
    add_store_args(q)
    q.set_defaults(func=rollback)


def _settings(args: argparse.Namespace, **extra: object) -> ServeSettings:
    from lmforge.serve import load_settings

    return load_settings(
        None, state_dir=args.state_dir, registry_url=args.registry_url, audit_log=args.audit_log, **extra
    )


def register_version(args: argparse.Namespace) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import open_stores

    settings = _settings(args, public_key=args.public_key, allow_unsigned=args.allow_unsigned or None)
    with open_stores(settings) as stores:
        info = stores.registry.register(
            args.name,
            args.run,
            variant=args.variant,
            public_key=settings.public_key,
            allow_unsigned=settings.allow_unsigned,
            actor=default_actor(),
        )
        if args.activate:
            stores.registry.activate(args.name, info.version, actor=default_actor())
    signed = "signed" if info.signed else "unsigned"
    say(
        f"registered {args.name} version {info.version}: {info.run_path} (variant {info.variant}, {signed})"
        + ("; active" if args.activate else "")
    )
    return 0


def list_models(args: argparse.Namespace) -> int:
    from lmforge.serve import open_stores

    with open_stores(_settings(args)) as stores:
        if args.name:
            dump([v.to_dict() for v in stores.registry.list_versions(args.name)])
        else:
            dump([m.to_dict() for m in stores.registry.list_models()])
    return 0


def activate(args: argparse.Namespace) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import open_stores

    with open_stores(_settings(args)) as stores:
        info = stores.registry.activate(args.name, args.version, actor=default_actor())
    say(f"{info.name}: version {info.active_version} is active")
    return 0


def canary(args: argparse.Namespace) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import open_stores

    with open_stores(_settings(args)) as stores:
        info = stores.registry.set_canary(args.name, args.version, args.percent, actor=default_actor())
    if info.canary_version is None:
        say(f"{info.name}: canary stopped; version {info.active_version} serves all traffic")
    else:
        say(
            f"{info.name}: {info.canary_percent:g} % of traffic to version {info.canary_version}, "
            f"the rest to {info.active_version}"
        )
    return 0


def rollback(args: argparse.Namespace) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import open_stores

    with open_stores(_settings(args)) as stores:
        result = stores.registry.rollback(args.name, actor=default_actor())
    if result is None:  # only with only_canary, which the CLI never passes
        return 1
    info, done = result
    what = "canary stopped" if done["action"] == "canary_aborted" else "reverted"
    say(f"{info.name}: {what}: version {done['from_version']} -> {done['to_version']} is active")
    return 0
