"""`lmforge tune SPEC --out DIR [--trials N] [--timeout S]`: hyper-parameter search with Optuna.

The search itself is :func:`lmforge.tune.tune`; this verb prints the table of trials and signs
``DIR/best`` (the winner, evaluated on the test split), so `lmforge predict/compress/serve`
accept it as they accept any run a stage wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmforge.cli._common import add_set_arg, metrics_line, say, sign_after


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="hyper-parameter search (Optuna) over the spec's tune.space",
        description="Search the spec's tune.space: every trial a run directory under DIR/trials, the study "
        "in DIR/study.db (run the same command again after a crash to continue), the winner in DIR/best.",
        epilog="examples:\n  lmforge tune recipes/tune.yaml --out runs/tune\n"
        "  lmforge tune recipes/tune.yaml --out runs/tune --trials 20 --timeout 3600   # more trials, 1 h\n\n"
        "--timeout: no trial starts after S seconds (counted from the first trial); a running one finishes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="YAML spec with a tune: section (trials, timeout, objective, pruner, space)")
    p.add_argument("--out", required=True, help="search directory (study.db, prepared/, trials/, best/)")
    p.add_argument("--trials", type=int, help="finished trials to reach (overrides tune.trials)")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds after which no trial starts (overrides "
                   "tune.timeout)")
    add_set_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec
    from lmforge.tune import format_table, tune

    spec = load_spec(args.spec, args.overrides)
    say(f"tune: {spec.data.path or spec.data.dataset} + {spec.model.name}, {args.trials or spec.tune.trials} trials "
        f"-> {args.out}")
    result = tune(spec, Path(args.out), trials=args.trials, timeout=args.timeout)
    summary = result.summary
    say(format_table(result.rows, summary["objective"], summary["second_objective"]))
    if summary["stopped_by"] == "timeout":
        say(f"stopped by the timeout ({summary['timeout']:g} s): {summary['finished']} of {summary['trials']} "
            "trials finished; run the same command again to continue")
    if result.best is not None:
        sign_after(result.best)
        say(f"best: trial {summary['best_trial']} -> {result.best}")
        say(f"test (best trial, evaluated once): {metrics_line(result.test_metrics)}")
    say(f"report: {result.files['report']}")
    return 0
