"""Report verbs: fairness (metrics per slice) and report compliance (one document about a run).

Both call :mod:`lmforge.evaluate`: they need the run's model or its evaluation. ``fairness``
loads the model, so it verifies the run first like ``lmforge predict`` (``--public-key``,
``--allow-unsigned``), and re-signs it after writing ``eval/fairness.json`` (as the stages do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmforge.cli._common import dump, say
from lmforge.cli.stages import add_trust_args, resign
from lmforge.errors import ConfigError

_RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fairness", help="metrics per slice of the test split, with disparity warnings", formatter_class=_RAW,
        epilog="examples:\n  lmforge fairness runs/demo --by-handle\n"
        "  lmforge fairness runs/demo --keywords groups.json --threshold 0.9\n"
        '      (groups.json: {"united": ["@united"], "delta": ["@delta", "delta air"]})',
    )
    p.add_argument("run", help="trained run directory")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--by-handle", action="store_true", help="one slice per @handle in the texts")
    how.add_argument("--group-field", help="a field of the test records naming each example's group")
    how.add_argument("--keywords", metavar="FILE.json", help='{"group": ["keyword", ...]} (case-insensitive)')
    p.add_argument("--threshold", type=float, default=0.8, help="warn below this min/max ratio (default 0.8)")
    p.add_argument("--min-support", type=int, default=20, help="least examples for a slice to count (default 20)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    add_trust_args(p)
    p.set_defaults(func=fairness)

    p = sub.add_parser("report", help="reports about a run", formatter_class=_RAW,
                       epilog="example: lmforge report compliance runs/demo --output compliance.html")
    report_sub = p.add_subparsers(dest="report_verb", metavar="KIND", required=True)
    q = report_sub.add_parser(
        "compliance", help="model card, lineage, PII scan, fairness, metrics and signature in one document",
        formatter_class=_RAW,
        epilog="examples:\n  lmforge report compliance runs/demo --output compliance.md\n"
        "  lmforge report compliance runs/demo --public-key signing.key.pub --output compliance.html",
    )
    q.add_argument("run", help="run directory")
    q.add_argument("--output", "-o", help="file to write, .md or .html (default: Markdown on stdout)")
    q.add_argument("--format", dest="fmt", choices=("md", "html"), help="default: from --output's extension")
    q.add_argument("--public-key", help="the signer's public key, to verify the signature")
    q.set_defaults(func=report_compliance)


# -- handlers --------------------------------------------------------------------------------------
def fairness(args: argparse.Namespace) -> int:
    from lmforge.evaluate import fairness_for_run, render_fairness_markdown
    from lmforge.guard import trust_run
    from lmforge.predict import load_predictor
    from lmforge.rundir import FP32

    keywords = None
    if args.keywords:
        try:
            keywords = json.loads(Path(args.keywords).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--keywords {args.keywords}: cannot read a JSON object ({exc}).") from None
        if not isinstance(keywords, dict):
            raise ConfigError(f"--keywords {args.keywords} must hold {{\"group\": [\"keyword\", ...]}}.")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}.")
    check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
    report = fairness_for_run(args.run, group_field=args.group_field, keywords=keywords, handles=args.by_handle,
                              threshold=args.threshold, min_support=args.min_support, batch_size=args.batch_size,
                              predictor=load_predictor(args.run, FP32, verified=check))
    resign(args.run, check, ("eval/fairness.json",))
    if args.json:
        dump(report)
    else:
        sys.stdout.write(render_fairness_markdown(report))
        say(f"wrote {Path(args.run) / 'eval' / 'fairness.json'}")
    return 0


def report_compliance(args: argparse.Namespace) -> int:
    from lmforge.evaluate import compliance_report
    from lmforge.rundir import atomic_write_text

    fmt = args.fmt or ("html" if args.output and args.output.lower().endswith((".html", ".htm")) else "md")
    text = compliance_report(args.run, public_key=args.public_key, fmt=fmt)
    if args.output:
        atomic_write_text(args.output, text)
        say(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0
