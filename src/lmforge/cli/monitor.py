"""`lmforge monitor`: offline drift report, drift reference, list of detectors."""

from __future__ import annotations

import argparse

from lmforge.cli._common import say
from lmforge.cli.stages import add_trust_args
from lmforge.errors import ConfigError

_RAW = argparse.RawDescriptionHelpFormatter

REPORT_EXAMPLE = """examples:
  lmforge monitor report --reference runs/demo --current last_week.jsonl
  lmforge monitor report --reference runs/demo --current tickets.csv --text-field body --output drift.html
  lmforge monitor report --reference runs/demo --current batch.jsonl --detectors oov-rate,embedding --fail-on-drift

Writes the HTML report (plots inline) and a JSON file next to it (same name, .json).
Exit code 0 with a verdict (1 with --fail-on-drift when drift is found); 2 for a user error
(missing run, unreadable file, too few texts for a verdict) or a reference run that fails
verification (as for `lmforge predict`: a valid signature, or --allow-unsigned)."""

REFERENCE_EXAMPLE = """example:
  lmforge monitor reference runs/demo --output runs/demo-reference.json

Fits every drift detector on the run (the model runs over the val split) and saves the
fitted state as JSON; point the server's monitor.reference_state at it to skip fitting at start.
The run is verified first, as for `lmforge predict` (--public-key, --allow-unsigned)."""


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--detectors needs at least one detector name, got {value!r}.")
    from lmforge.monitor import get_detector

    for name in names:
        get_detector(name)  # unknown names fail here, listing the registered ones
    return names


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "monitor", help="drift report and monitoring tools", formatter_class=_RAW, epilog=REPORT_EXAMPLE
    )
    monitor_sub = p.add_subparsers(dest="monitor_verb", metavar="ACTION", required=True)

    q = monitor_sub.add_parser(
        "report",
        help="HTML + JSON drift report of a data file against a run",
        formatter_class=_RAW,
        epilog=REPORT_EXAMPLE,
    )
    q.add_argument("--reference", required=True, metavar="RUN", help="trained run directory (the reference)")
    q.add_argument("--current", required=True, metavar="FILE", help="current texts: .jsonl or .csv")
    q.add_argument(
        "--output",
        default="drift_report.html",
        metavar="REPORT.html",
        help="HTML report to write (default: drift_report.html); the JSON goes next to it",
    )
    q.add_argument("--text-field", default="text", help="field or column holding the text (default: text)")
    q.add_argument(
        "--label-field", default="label", help="field with true labels, if the file has them (default: label)"
    )
    q.add_argument(
        "--detectors", default=None, metavar="A,B", help="detectors to run (default: all available)"
    )
    q.add_argument(
        "--max-reference",
        type=int,
        default=1000,
        metavar="N",
        help="most reference examples per detector (default: 1000)",
    )
    q.add_argument("--fail-on-drift", action="store_true", help="exit 1 when any detector finds drift")
    add_trust_args(q)
    q.set_defaults(func=report)

    q = monitor_sub.add_parser(
        "reference",
        help="fit the drift detectors on a run and save them as JSON",
        formatter_class=_RAW,
        epilog=REFERENCE_EXAMPLE,
    )
    q.add_argument("run", help="trained run directory")
    q.add_argument("--output", required=True, metavar="FILE.json", help="where to save the fitted reference")
    q.add_argument(
        "--detectors", default=None, metavar="A,B", help="detectors to fit (default: all available)"
    )
    q.add_argument(
        "--max-reference",
        type=int,
        default=1000,
        metavar="N",
        help="most reference examples per detector (default: 1000)",
    )
    add_trust_args(q)
    q.set_defaults(func=reference)

    from lmforge.cli.label import register_sample

    register_sample(monitor_sub)

    q = monitor_sub.add_parser("detectors", help="list the drift detectors")
    q.set_defaults(func=detectors)


def report(args: argparse.Namespace) -> int:
    from lmforge.guard import trust_run
    from lmforge.monitor import drift_report

    if args.max_reference < 1:
        raise ConfigError(f"--max-reference must be at least 1, got {args.max_reference}.")
    check = trust_run(args.reference, args.public_key, allow_unsigned=args.allow_unsigned)
    doc = drift_report(
        args.reference,
        args.current,
        args.output,
        text_field=args.text_field,
        label_field=args.label_field,
        detectors=_names(args.detectors),
        max_examples=args.max_reference,
        verified=check,
    )
    for r in doc["results"]:
        verdict = "DRIFT" if r["drift"] else "ok" if r["drift"] is False else "no verdict"
        say(f"  {r['name']:<18} {verdict:<10} {r['reason']}")
    drifted = ", ".join(doc["drifted"])
    say(f"verdict: {doc['verdict']}{' (' + drifted + ')' if drifted else ''} over {doc['n_current']} texts")
    say(f"wrote {doc['html']} and {doc['json']}")
    return 1 if args.fail_on_drift and doc["drifted"] else 0


def reference(args: argparse.Namespace) -> int:
    from lmforge.guard import trust_run
    from lmforge.monitor import fit_reference

    if args.max_reference < 1:
        raise ConfigError(f"--max-reference must be at least 1, got {args.max_reference}.")
    names = _names(args.detectors)
    check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
    state = fit_reference(args.run, names, max_examples=args.max_reference, verified=check)
    state.save(args.output)
    say(f"fitted {', '.join(sorted(state.detectors)) or 'no detector'}")
    for name, why in sorted(state.skipped.items()):
        say(f"  skipped {name}: {why}")
    say(f"wrote {args.output}")
    return 0


def detectors(args: argparse.Namespace) -> int:
    from lmforge.monitor import DETECTORS, available_detectors, detector_names

    available = set(available_detectors())
    for name in detector_names():
        cls = DETECTORS[name]
        note = (
            ""
            if name in available
            else "  (needs: " + ", ".join(f"lmforge[{e}]" for _, e in cls.requires) + ")"
        )
        say(f"{name:<18} {cls.needs:<8} {cls.description}{note}")
    return 0
