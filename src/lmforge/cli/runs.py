"""``lmforge runs compare RUN_A RUN_B [...] [--html OUT]``: runs side by side (``lmforge.evaluate``)."""

from __future__ import annotations

import argparse

from lmforge.cli._common import say

_RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="look at several runs together", formatter_class=_RAW,
                       epilog="example: lmforge runs compare runs/lr-1e-4 runs/lr-3e-4 --html compare.html")
    runs_sub = p.add_subparsers(dest="runs_verb", metavar="ACTION", required=True)
    q = runs_sub.add_parser(
        "compare", help="the spec keys that differ and the metrics of two or more runs, side by side",
        formatter_class=_RAW,
        epilog="examples:\n  lmforge runs compare runs/a runs/b\n"
        "  lmforge runs compare runs/* --html compare.html   (one self-contained page, the same tables)",
    )
    q.add_argument("runs", nargs="*", metavar="RUN", help="run directories (at least two)")
    q.add_argument("--html", metavar="OUT.html", help="also write the tables as a self-contained HTML page")
    q.set_defaults(func=compare)


def compare(args: argparse.Namespace) -> int:
    from lmforge.evaluate import compare_runs, render_comparison_html, render_comparison_text
    from lmforge.rundir import atomic_write_text

    comparison = compare_runs(args.runs)
    print(render_comparison_text(comparison), end="", flush=True)
    if args.html:
        atomic_write_text(args.html, render_comparison_html(comparison))
        say(f"wrote {args.html}")
    return 0
