"""`lmforge retrain RUN --state STATE --out NEW`: retrain a served run on its feedback; optionally canary it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from lmforge.cli._common import dump, say, sign_after
from lmforge.cli.stages import add_trust_args
from lmforge.errors import ConfigError

EXAMPLE = """examples:
  lmforge retrain runs/exp1 --state .lmforge --out runs/exp1-r1
  lmforge retrain runs/exp1 --state .lmforge --out runs/exp1-r1 --register --canary-percent 10
  lmforge retrain runs/exp1 --state postgresql+psycopg://lm@db/monitor --registry-url postgresql+psycopg://lm@db/reg \\
      --model sentiment --out runs/exp1-r1 --set retrain.max_forgetting=0.5 --from base

Takes the feedback-labelled predictions of RUN's served model (--model, default the name
`lmforge serve RUN` gives it: the folder's name) from the monitor store (STATE/monitor.db or a
URL), merges them into RUN's training split (one label per text, the newest; texts that
duplicate RUN's test split dropped), holds out retrain.fresh_test_share of them as a fresh test
set, trains with RUN's spec (warm-started from RUN's weights unless --from base), and evaluates
on RUN's old test split and the fresh one: NEW/eval/retrain.json. --register adds NEW as a version
of the served model and sends it --canary-percent of traffic, unless it lost more than
retrain.max_forgetting points of old-test accuracy (then exit 1, NEW kept for inspection)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="retrain a served run on its production feedback", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the served (parent) run directory")
    p.add_argument("--state", default=".lmforge", metavar="STATE_OR_URL",
                   help="state folder with monitor.db (and registry.db), or the monitor store's URL (default: .lmforge)")
    p.add_argument("--out", required=True, help="the new run directory (must not exist or be empty)")
    p.add_argument("--model", default=None, help="the name RUN is served under (default: its folder's name)")
    p.add_argument("--from", dest="start", choices=("parent", "base"), default=None,
                   help="warm-start from RUN's weights (parent, default) or from its base model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key of RUN's spec (repeatable), e.g. retrain.max_forgetting=0.5")
    p.add_argument("--key-file", default=None, help="the key ring of an encrypt text policy")
    p.add_argument("--register", action="store_true", help="register NEW as a canary of the served model")
    p.add_argument("--canary-percent", type=float, default=10.0, help="traffic share of the canary (default: 10)")
    p.add_argument("--registry-url", default=None, help="registry database URL (default: STATE/registry.db)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    add_trust_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmforge.guard import trust_run
    from lmforge.monitor import store_url
    from lmforge.retrain import retrain

    check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
    model = args.model or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(args.run).resolve().name).strip("-._")[:64] or "model"
    if args.register:  # before the training it would follow, not after
        _check_canary_target(args, model)
    overrides = [*args.overrides, *([f"retrain.start={args.start}"] if args.start else [])]
    report = retrain(args.run, store_url(args.state), args.out, model=model, overrides=overrides,
                     key_file=args.key_file, verified=check, progress=args.progress)
    sign_after(args.out)
    dump({k: report[k] for k in ("model", "feedback", "old_test", "fresh_test", "promotable")})
    if not args.register:
        return 0
    if not report["promotable"]:
        say(f"not registered: {args.out} lost {report['old_test']['drop_points']} points of accuracy on "
            f"{args.run}'s test split (retrain.max_forgetting {report['max_forgetting']}); it is kept for inspection")
        return 1
    return _register(args, model)


def _settings(args: argparse.Namespace) -> Any:
    from lmforge.serve import load_settings

    state = {} if "://" in args.state else {"state_dir": args.state}
    return load_settings(None, registry_url=args.registry_url, public_key=args.public_key,
                         allow_unsigned=args.allow_unsigned or None, **state)


def _check_canary_target(args: argparse.Namespace, model: str) -> None:
    """Refuse --register up front when NEW could not become a canary: a bad percent, or no active version."""
    from lmforge.serve import open_stores

    if not 0.0 < args.canary_percent <= 100.0:
        raise ConfigError(f"--canary-percent must be above 0 and at most 100, got {args.canary_percent:g}.")
    with open_stores(_settings(args)) as stores:
        active = {m.name: m.active_version for m in stores.registry.list_models()}.get(model)
    if active is None:
        raise ConfigError(
            f"--register: model {model!r} has no active version in the registry of {args.state}, so the retrained "
            "run could not be its canary; nothing was trained or registered. Serve the parent run first "
            f"(`lmforge registry register {model} {args.run} --activate`), or name the served model with --model."
        )


def _register(args: argparse.Namespace, model: str) -> int:
    from lmforge.guard import default_actor
    from lmforge.serve import open_stores

    settings = _settings(args)
    with open_stores(settings) as stores:
        info = stores.registry.register(model, args.out, public_key=settings.public_key,
                                        allow_unsigned=settings.allow_unsigned, actor=default_actor())
        stores.registry.set_canary(model, info.version, args.canary_percent, actor=default_actor())
    say(f"registered {model} version {info.version} ({args.out}) as a canary at {args.canary_percent:g} % of traffic")
    return 0
