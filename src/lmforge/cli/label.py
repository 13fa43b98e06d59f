"""`lmforge monitor sample` (what to label next) and `lmforge label import` (the labels, as feedback)."""

from __future__ import annotations

import argparse
import json

from lmforge.cli._common import say
from lmforge.cli.stages import add_trust_args
from lmforge.errors import DataError

_RAW = argparse.RawDescriptionHelpFormatter

SAMPLE_EXAMPLE = """examples:
  lmforge monitor sample --state .lmforge --n 200 --strategy uncertainty --out to_label.jsonl
  lmforge monitor sample --state .lmforge --n 50 --strategy diverse --run runs/demo --out to_label.jsonl
  lmforge label import to_label.jsonl --state .lmforge        # after filling in each "label"

Reads the prediction store of `lmforge serve --monitor` (STATE/monitor.db, or a database URL):
served classifier predictions with no feedback whose text the store kept (text_policy redact,
redact+encrypt with --key-file, encrypt or none), one per distinct text. Strategies: uncertainty
(1 - max p), margin (1 - (p1 - p2)), entropy, diverse (k-center on the --run model's embeddings
among the 5 x N most uncertain). Each line has "label": null for you to fill in."""

IMPORT_EXAMPLE = """example:
  lmforge label import to_label.jsonl --state .lmforge

Each line: {"prediction_id", "label", ...} (other fields ignored; a null or empty label is
skipped). Every line is checked first (the id is in the store, the label is one of the model's,
no other label was given before unless --override); with any problem nothing is imported and
each problem is listed (exit 2). Imported labels are feedback as POST /v1/feedback records it:
live accuracy, canary judgement and `lmforge retrain` read them."""


def register_sample(monitor_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``lmforge monitor sample``: a subcommand of ``lmforge monitor``."""
    q = monitor_sub.add_parser("sample", help="pick served, unlabelled texts worth labelling",
                               formatter_class=_RAW, epilog=SAMPLE_EXAMPLE)
    q.add_argument("--state", default=".lmforge", metavar="STATE_OR_URL",
                   help="state folder with monitor.db, or the store's URL (default: .lmforge)")
    q.add_argument("--n", type=int, required=True, help="how many texts to pick")
    q.add_argument("--strategy", default="uncertainty", choices=("uncertainty", "margin", "entropy", "diverse"),
                   help="how to rank them (default: uncertainty)")
    q.add_argument("--out", required=True, metavar="FILE.jsonl", help="where to write them")
    q.add_argument("--model", default=None, help="only this served model's predictions")
    q.add_argument("--version", default=None, help="only this version's (with --model)")
    q.add_argument("--run", default=None, help="the served run, whose encoder embeds texts for --strategy diverse")
    q.add_argument("--key-file", default=None, help="the key ring of an encrypt text policy")
    add_trust_args(q)
    q.set_defaults(func=sample)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("label", help="import labels as feedback", formatter_class=_RAW, epilog=IMPORT_EXAMPLE)
    label_sub = p.add_subparsers(dest="label_verb", metavar="ACTION", required=True)
    q = label_sub.add_parser("import", help="record a labelled file as feedback", formatter_class=_RAW,
                             epilog=IMPORT_EXAMPLE)
    q.add_argument("file", help="JSONL with prediction_id and label per line")
    q.add_argument("--state", default=".lmforge", metavar="STATE_OR_URL",
                   help="state folder with monitor.db, or the store's URL (default: .lmforge)")
    q.add_argument("--override", action="store_true", help="replace a label given before")
    q.set_defaults(func=import_file)


def sample(args: argparse.Namespace) -> int:
    from lmforge.monitor import open_store, sample_for_labelling, store_url
    from lmforge.rundir import atomic_write_text

    embed = None
    if args.run is not None:
        from lmforge.guard import trust_run
        from lmforge.predict import TorchPredictor, load_predictor

        check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
        predictor = load_predictor(args.run, "fp32", verified=check)
        if not isinstance(predictor, TorchPredictor):
            raise DataError(f"{args.run} is not a classifier run: --run gives the served classifier's encoder.")
        embed = predictor.embed
    with open_store(store_url(args.state)) as store:
        picked = sample_for_labelling(store, args.n, args.strategy, model=args.model, version=args.version,
                                      embed=embed, key_file=args.key_file)
    atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked))
    say(f"wrote {len(picked)} texts to label to {args.out} (strategy {args.strategy})")
    return 0


def import_file(args: argparse.Namespace) -> int:
    from lmforge.monitor import import_labels, open_store, read_label_file, store_url

    records = read_label_file(args.file)
    with open_store(store_url(args.state)) as store:
        done = import_labels(store, records, override=args.override)
    if done.problems:
        shown = "; ".join(done.problems[:10]) + (f"; and {len(done.problems) - 10} more" if len(done.problems) > 10
                                                 else "")
        raise DataError(f"{args.file}: nothing imported, {len(done.problems)} line(s) need fixing: {shown}")
    say(f"imported {done.imported} labels ({done.unchanged} already given, {done.skipped} lines without a label)")
    return 0
