"""Helpers shared by the CLI verbs: spec arguments and output formatting."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_spec_args(parser: argparse.ArgumentParser, *, spec_optional: bool = True) -> None:
    parser.add_argument(
        "spec", nargs="?" if spec_optional else None, default=None,
        help="YAML spec file (omit for the embedded default: airline-tweets + minilm-l6; with --set "
        "task=generate: support-answers + smollm2-135m)",
    )
    add_set_arg(parser)


def add_set_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.epochs=2 (repeatable)",
    )


def add_progress_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def say(message: str) -> None:
    """A line for the user on stdout."""
    print(message, flush=True)


def sign_after(run: Any) -> None:
    """Re-sign a run a stage just rewrote, with the user's key (see :mod:`lmforge.guard._trust`)."""
    from lmforge.guard import auto_sign

    signed = auto_sign(run)
    if signed is None:
        return
    if signed["created"]:
        say(f"created your signing key {signed['key']} (public half: {signed['key']}.pub); "
            "predict and serve verify runs against it")
    say(f"signed {run} (key {signed['key_id']})")


def dump(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _gen_part(block: dict[str, Any]) -> str:
    ppl = "n/a" if block["perplexity"] is None else f"{block['perplexity']:.3f}"
    return f"ROUGE-L {block['rouge_l']:.4f}  perplexity {ppl}  stop rate {block['stop_rate']:.1%}"


def metrics_line(metrics: dict[str, Any]) -> str:
    """The headline test metrics on one line: a classifier's, or a generator's with its baselines."""
    if "rouge_l" in metrics:
        base, nearest = metrics["baselines"]["base_model"], metrics["baselines"]["retrieval"]
        return (
            f"{_gen_part(metrics)}  (n_test={metrics['n_test']}); base model: {_gen_part(base)}; "
            f"retrieval: {_gen_part(nearest)}"
        )
    line = (
        f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
        f"ECE {metrics.get('ece', float('nan')):.4f}  (n_test={metrics['n_test']})"
    )
    majority = (metrics.get("baselines") or {}).get("majority")
    if majority:
        line += f"  | majority class: accuracy {majority['accuracy']:.4f}  macro-F1 {majority['macro_f1']:.4f}"
    if (metrics.get("baseline_check") or {}).get("beats") is False:
        line += "  | CHANCE LEVEL: no better than the majority class"
    return line


STRICT_EXIT = 3
"""Exit status of ``--strict`` when the model does not beat the baselines (2 means bad input)."""


def add_strict_arg(p: argparse.ArgumentParser) -> None:
    """``--strict``: a chance-level model (not beating the majority baseline) exits 3."""
    p.add_argument("--strict", action="store_true",
                   help=f"exit {STRICT_EXIT} when the model does not beat the majority-class baseline by "
                   "evaluate.baseline_margin (accuracy and macro-F1)")


def strict_status(args: argparse.Namespace, metrics: dict[str, Any]) -> int:
    """0, or ``STRICT_EXIT`` under ``--strict`` for a model at chance level (saying so)."""
    if (metrics.get("baseline_check") or {}).get("beats") is not False:
        return 0
    say("warning: the model does not beat the majority-class baseline: it is at chance level "
        "(see eval/metrics.json baselines).")
    return STRICT_EXIT if getattr(args, "strict", False) else 0
