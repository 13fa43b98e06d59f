"""The lmforge command line: one verb per module, each parses and calls one library function.

    lmforge run [SPEC] --out DIR        prepare -> train -> evaluate
    lmforge prepare [SPEC] --out DIR    data stage only
    lmforge train DIR [--resume]        train stage only
    lmforge evaluate DIR                evaluate stage only
    lmforge tune SPEC --out DIR         hyper-parameter search (Optuna); the winner in DIR/best
    lmforge bot build | ask | eval      customer-service bot: intents, out of scope, FAQ, escalation
    lmforge compress DIR [--budget 1]   ONNX/int8/pruned/distilled variants, fastest within budget
    lmforge predict DIR --text ...      label texts (with the selected variant, or --url a server)
    lmforge recommend train SPEC --out DIR | predict DIR --users F | similar DIR --item ID
                                        a text-aware recommender (baselines, text model, blend)
    lmforge serve RUN_OR_REGISTRY       HTTP API: batching, admission control, API keys, registry
    lmforge registry | keys             model versions (activate, canary, rollback); API keys
    lmforge validate SPEC               check a spec
    lmforge models | datasets           the offline catalog
    lmforge redact | sign | verify | audit verify | key | encrypt | scan-model
                                        guard: PII, signed runs, audit log, keys
    lmforge fairness | report compliance
                                        reports about a trained run
    lmforge runs compare RUN_A RUN_B [--html OUT]
                                        spec differences and metrics side by side
    lmforge monitor report --reference RUN --current FILE
                                        offline drift report (HTML + JSON)
    lmforge monitor sample --n N --strategy S --out F | label import F
                                        what to label next (active learning); labels as feedback
    lmforge retrain RUN --state STATE --out NEW [--register]
                                        retrain on production feedback, guarded against forgetting
    lmforge watch replay SPEC --input STREAM --output alerts.jsonl [--report DIR]
    lmforge watch eval SPEC --input STREAM (--incidents FILE | --inject POOL)
                                        sentiment watch: spike alerts over a dated stream, measured

User errors (bad spec, bad data, missing files or extras) print one message and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lmforge import __version__
from lmforge.cli import (
    bot,
    catalog,
    compress,
    guard,
    keys,
    label,
    monitor,
    predict,
    recommend,
    registry,
    reports,
    retrain,
    runs,
    serve,
    stages,
    tune,
    validate,
    watch,
)
from lmforge.errors import LmforgeError

VERBS = (stages, tune, bot, compress, predict, recommend, serve, registry, keys, validate, catalog, guard, reports, runs,
         monitor, label, retrain, watch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge",
        description="From labeled text to a fine-tuned, evaluated model: one spec, one CLI, offline.",
        epilog="example: lmforge run --out runs/demo   (the embedded default job)",
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module in VERBS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # lmforge never fetches from a hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        return int(args.func(args) or 0)
    except LmforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
