"""`lmforge validate SPEC`: check a spec and list every problem at once."""

from __future__ import annotations

import argparse

from lmforge.cli._common import add_set_arg, say

EXAMPLE = "example: lmforge validate recipes/airline-lora.yaml --set train.epochs=2"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a spec file", description=__doc__, epilog=EXAMPLE)
    p.add_argument("spec", help="YAML spec file")
    add_set_arg(p)
    p.add_argument("--print", dest="show", action="store_true", help="print the resolved spec")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec, spec_to_yaml
    from lmforge.pipeline import check_spec

    spec = load_spec(args.spec, args.overrides)
    check_spec(spec)
    say(f"{args.spec}: spec is well-formed")
    if args.show:
        say(spec_to_yaml(spec))
    return 0
