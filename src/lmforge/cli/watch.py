"""`lmforge watch replay|eval|calibrate|serve SPEC`: the financial sentiment watch over a dated stream.

``replay`` scores a stream with the spec's ``watch.sentiment_run`` (and ``watch.topic_run``),
alerts on surges of negative texts per topic and window, and writes alerts.jsonl (and, with
``--report``, timeline.csv and report.html); ``eval`` measures every detector's alerts against
labelled incidents or seeded injected surges; ``calibrate`` gives each detector the threshold that
keeps a calm stream's alerts under a false-alarm rate; ``serve`` runs the watch live on the server
(``POST /v1/ingest``, ``GET /v1/watch``, the ``/watch`` page). The library is :mod:`lmforge.apps.watch`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmforge.cli._common import add_set_arg, dump, say

_TRUST_HELP = "public key the runs' signatures are checked with (default: $LMFORGE_PUBLIC_KEY or yours)"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="YAML spec with a watch: section (sentiment_run, negative_label, window, detector...)")
    p.add_argument("--input", required=True, help="the stream: JSONL or CSV with a time and a text column; - reads "
                   "JSON lines from stdin")
    p.add_argument("--public-key", help=_TRUST_HELP)
    p.add_argument("--allow-unsigned", action="store_true", help="accept unsigned runs (their files are still "
                   "checked against the manifest)")
    add_set_arg(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="sentiment watch: spike alerts over a dated stream, and their evaluation",
                       description="Topic + sentiment over a stream of dated texts, one alert per surge of negative "
                       "texts per topic.")
    verbs = p.add_subparsers(dest="watch_verb", metavar="ACTION", required=True)
    r = verbs.add_parser(
        "replay", help="replay a stream: alerts.jsonl, timeline.csv and report.html",
        description="Score a dated stream, window it per topic, alert on surges of negative texts.",
        epilog="examples:\n  lmforge watch replay watch.yaml --input headlines.csv --output alerts.jsonl --report out/\n"
        "  cat stream.jsonl | lmforge watch replay watch.yaml --input - --output alerts.jsonl   # stdin, read to its end\n"
        "  lmforge watch replay watch.yaml --input s.jsonl --output a.jsonl --set watch.window=7d",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(r)
    r.add_argument("--output", required=True, help="alerts.jsonl to write (one alert per line, in time order)")
    r.add_argument("--report", metavar="DIR", help="folder for timeline.csv and report.html")
    r.set_defaults(func=replay)
    e = verbs.add_parser(
        "eval", help="alert precision, recall and detection delay of every detector",
        description="Measure the alerts of every detector against labelled incidents ({topic, start, end} per line) "
        "or against seeded surges of negative texts injected into a calm stream.",
        epilog="examples:\n  lmforge watch eval watch.yaml --input stream.jsonl --incidents incidents.jsonl\n"
        "  lmforge watch eval watch.yaml --input calm.jsonl --inject negatives.jsonl --surges 20 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(e)
    e.add_argument("--incidents", help="labelled incidents, JSONL {topic, start, end}")
    e.add_argument("--inject", metavar="POOL", help="JSONL/CSV of negative texts to plant as surges")
    e.add_argument("--surges", type=int, default=20, help="surges to inject (default 20)")
    e.add_argument("--seed", type=int, default=0, help="seed of the injected surges' times and sizes")
    e.add_argument("--detectors", help="comma-separated detectors to compare (default: all)")
    e.add_argument("--output", help="write the results as JSON here (default: stdout only)")
    e.set_defaults(func=evaluate)
    c = verbs.add_parser(
        "calibrate", help="each detector's threshold for a false-alarm rate, on a calm stream",
        description="Score a stream known to be calm and give every detector the smallest threshold at which its "
        "alerts are at most --rate of the windows it judges (so detectors compare at the same false-alarm rate). "
        "Put the one you pick in watch.threshold.",
        epilog="examples:\n  lmforge watch calibrate watch.yaml --input last-quarter.jsonl --rate 0.01\n"
        "  lmforge watch calibrate watch.yaml --input calm.jsonl --rate 0.005 --detectors zscore,cusum",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(c)
    c.add_argument("--rate", type=float, default=0.01,
                   help="alerts per judged window allowed on the calm stream (default 0.01)")
    c.add_argument("--detectors", help="comma-separated detectors to calibrate (default: all)")
    c.add_argument("--output", help="write the thresholds as JSON here (default: stdout only)")
    c.set_defaults(func=calibrate)
    s = verbs.add_parser(
        "serve", help="the watch live: POST /v1/ingest, GET /v1/watch, the /watch page (and /v1/predict)",
        description="Serve the spec's sentiment run with the live watch beside it: POST /v1/ingest scores batches of "
        "dated texts and alerts the moment a window closes; GET /v1/watch is the per-topic timeline, /watch its page. "
        "The same as `lmforge serve SPEC`, with --set.",
        epilog="examples:\n  lmforge watch serve watch.yaml --public-key signing.key.pub --port 8000\n"
        "  curl -H \"Authorization: Bearer $TOKEN\" -H \"Content-Type: application/json\" -d '{\"items\": [{\"time\": \"2024-03-04T12:00:00Z\", "
        "\"text\": \"gold slumps\"}]}' localhost:8000/v1/ingest\n"
        "  curl -H \"Authorization: Bearer $TOKEN\" localhost:8000/v1/watch",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("spec", help="YAML spec with a watch: section")
    s.add_argument("--config", help="YAML file of serve settings (see lmforge serve)")
    s.add_argument("--host", default=None, help="interface to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default: 8000)")
    s.add_argument("--state", dest="state_dir", default=None, help="state folder: registry, keys (default: ./.lmforge)")
    s.add_argument("--public-key", default=None, help=_TRUST_HELP)
    s.add_argument("--allow-unsigned", action="store_true", default=None, help="accept unsigned runs (their files are "
                   "still checked against the manifest)")
    s.add_argument("--monitor", action="store_true", help="record /v1/predict's predictions and take feedback "
                   "(the monitor dashboard)")
    add_set_arg(s)
    s.set_defaults(func=serve)


def replay(args: argparse.Namespace) -> int:
    from lmforge.apps.watch import replay as run_replay
    from lmforge.config import load_spec

    spec = load_spec(args.spec, args.overrides)
    result = run_replay(spec, args.input, args.output, args.report, public_key=args.public_key,
                        allow_unsigned=args.allow_unsigned)
    s = result.summary
    say(f"watch: {s['texts']} texts ({s['skipped']} skipped), {s['topics']} topic(s), {s['windows']} windows, "
        f"{s['alerts']} alert(s) by {spec.watch.detector}; scored {s['texts_per_s']:g} texts/s")
    for name, path in result.files.items():
        say(f"{name}: {path}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from lmforge.apps.watch import evaluate_watch
    from lmforge.config import load_spec

    spec = load_spec(args.spec, args.overrides)
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()] if args.detectors else None
    result = evaluate_watch(spec, args.input, incidents=args.incidents, inject=args.inject, surges=args.surges,
                            seed=args.seed, detectors=detectors, public_key=args.public_key,
                            allow_unsigned=args.allow_unsigned)
    return _emit(result, args.output)


def calibrate(args: argparse.Namespace) -> int:
    from lmforge.apps.watch import calibrate_watch
    from lmforge.config import load_spec

    spec = load_spec(args.spec, args.overrides)
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()] if args.detectors else None
    result = calibrate_watch(spec, args.input, rate=args.rate, detectors=detectors, public_key=args.public_key,
                             allow_unsigned=args.allow_unsigned)
    return _emit(result, args.output)


def _emit(result: dict, output: str | None) -> int:
    """Print ``result`` as JSON, and write it to ``output`` too when given."""
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    dump(result)
    return 0


def serve(args: argparse.Namespace) -> int:
    from lmforge.apps.watch import watch_served
    from lmforge.cli.serve import serve_target

    return serve_target(args, watch_served(args.spec, args.overrides))
