"""`lmforge bot build | ask | eval`: the customer-service bot (lmforge.apps.support).

    lmforge bot build SPEC --out DIR [--compress]   intent run in DIR/run, OOS threshold, FAQ index
    lmforge bot ask DIR --text "..."                one JSON reply on stdout
    lmforge bot ask DIR --input in.jsonl --output out.jsonl   records {text, session_id?}
    lmforge bot eval DIR --input labeled.jsonl      DIR/eval/bot_metrics.json + bot_report.html
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmforge.cli._common import add_progress_arg, add_set_arg, dump, say, sign_after


def _trust_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--public-key", help="public key the bot's runs must be signed with (default: yours)")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="accept unsigned runs (their files are still checked against their manifests)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bot", help="customer-service bot: build, ask, eval",
                       description="A customer-service bot: intents, out-of-scope detection, FAQ answers, escalation.",
                       epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="bot_verb", metavar="VERB", required=True)
    b = verbs.add_parser("build", help="train the intent classifier and calibrate the bot",
                         epilog="example:\n  lmforge bot build recipes/support-bot.yaml --out bots/support",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("spec", help="YAML spec: data/model/train for the intents, plus a bot: section")
    b.add_argument("--out", required=True, help="bot directory (the intent run goes to DIR/run)")
    b.add_argument("--compress", action="store_true",
                   help="compress the intent run (default options) and calibrate its selected variant")
    add_set_arg(b)
    add_progress_arg(b)
    b.set_defaults(func=build)
    a = verbs.add_parser("ask", help="answer questions",
                         epilog='examples:\n  lmforge bot ask bots/support --text "where is my refund?"\n'
                         "  lmforge bot ask bots/support --input turns.jsonl --output replies.jsonl",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("dir", help="bot directory (lmforge bot build)")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="one question")
    src.add_argument("--input", help="JSONL of {text, session_id?} records")
    a.add_argument("--output", help="JSONL of replies, one per input record (with --input)")
    _trust_args(a)
    a.set_defaults(func=ask)
    e = verbs.add_parser("eval", help="measure the bot on labeled turns",
                         epilog="example:\n  lmforge bot eval bots/support --input labeled.jsonl",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("dir", help="bot directory")
    e.add_argument("--input", required=True, help="JSONL of {text, intent, session_id?, answer?} records")
    _trust_args(e)
    e.set_defaults(func=evaluate)


def build(args: argparse.Namespace) -> int:
    from lmforge.apps.support import RUN, build_bot
    from lmforge.compress import CompressOptions
    from lmforge.config import load_spec

    spec = load_spec(args.spec, args.overrides)
    say(f"bot build: {spec.data.path or spec.data.dataset} + {spec.model.name} -> {args.out}")
    manifest = build_bot(spec, Path(args.out), compress_options=CompressOptions() if args.compress else None,
                         progress=args.progress)
    sign_after(Path(args.out) / RUN)
    oos = manifest["oos"]
    say(f"intents: {len(manifest['labels'])}; out-of-scope: {oos['method']} (threshold {oos['threshold']:.4g}, "
        f"keeps {oos['methods'][oos['method']]['val_in_scope_recall']:.1%} of validation in scope)")
    if manifest["faq"]:
        say(f"FAQ: {manifest['faq']['entries']} entries indexed")
    say(f"bot: {args.out}")
    return 0


def _read_turns(path: Path) -> tuple[list[str], list[str | None]]:
    from lmforge._jsonl import iter_text_records
    from lmforge.errors import DataError

    if not path.is_file():
        raise DataError(f"--input {path} does not exist.")
    with path.open(encoding="utf-8") as fh:
        records = list(iter_text_records(fh, path, "text"))
    sessions = [None if r.get("session_id") is None else str(r["session_id"]) for r in records]
    return [r["text"] for r in records], sessions


def ask(args: argparse.Namespace) -> int:
    from lmforge.apps.support import Bot
    from lmforge.errors import ConfigError
    from lmforge.rundir import atomic_write_text

    if args.input and not args.output:
        raise ConfigError("--input needs --output (the JSONL file the replies go to).")
    if args.output and not args.input:
        raise ConfigError("--output goes with --input; with --text the reply is printed.")
    bot = Bot.load(args.dir, public_key=args.public_key, allow_unsigned=args.allow_unsigned)
    if args.text is not None:
        dump(bot.ask([args.text])[0])
        return 0
    texts, sessions = _read_turns(Path(args.input))
    replies = bot.ask(texts, sessions)
    atomic_write_text(args.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in replies))
    print(f"{len(replies)} replies -> {args.output}", file=sys.stderr)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from lmforge.apps.support import EVAL, METRICS, REPORT, Bot, evaluate_bot

    bot = Bot.load(args.dir, public_key=args.public_key, allow_unsigned=args.allow_unsigned)
    m = evaluate_bot(args.dir, args.input, bot=bot)
    say(f"in-scope accuracy {m['in_scope_accuracy']}  OOS recall {m['oos_recall']}  precision {m['oos_precision']}  "
        f"AUROC {m['oos_auroc']}  FAQ hit@1 {m['faq_hit_at_1']}  MRR {m['faq_mrr']}  ROUGE-L {m['answer_rouge_l']}  "
        f"escalation {m['escalation_rate']}")
    say(f"metrics: {Path(args.dir) / EVAL / METRICS}; report: {Path(args.dir) / EVAL / REPORT}")
    return 0
