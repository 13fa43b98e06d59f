"""`lmforge predict RUN`: label texts with a trained run's model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmforge._jsonl import iter_text_records
from lmforge.cli._common import dump
from lmforge.errors import DataError

EXAMPLE = """examples:
  lmforge predict runs/demo --text "@united lost my bag again"
  lmforge predict runs/demo --input texts.jsonl --output predictions.jsonl
  lmforge predict runs/demo --variant fp32 --text "on time, thanks"   # skip the selected variant
  lmforge predict --url http://127.0.0.1:8000 --api-key $TOKEN --text "late again"   # a running server

Uses RUN/compressed/selected (made by `lmforge compress`) when present, else the fp32 model.
The run must carry a valid signature (the CLI stages sign with your key; see `lmforge sign`),
or --allow-unsigned; a run whose files differ from its manifest is always refused."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict labels for texts", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="run directory with a trained model (or give --url)")
    p.add_argument("--text", action="append", default=[], help="a text to label (repeatable)")
    p.add_argument("--input", help="JSONL file with a text field per line")
    p.add_argument("--output", help="JSONL file to write (with --input)")
    p.add_argument("--text-field", default="text", help="field of --input holding the text (default: text)")
    p.add_argument("--variant", default=None,
                   help="compressed variant to use, or fp32 (default: the selected one, else fp32)")
    p.add_argument("--public-key", help="the signer's public key (default: $LMFORGE_PUBLIC_KEY, else your own)")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="load a run without signature.json (its files are still checked against the manifest)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.add_argument("--url", help="ask a running `lmforge serve` instead of loading RUN")
    p.add_argument("--api-key", help="API key for --url (default: $LMFORGE_API_KEY)")
    p.add_argument("--model", help="model name on the server (with --url; default: the server's default)")
    p.set_defaults(func=run)


def _read_jsonl(path: Path, field: str) -> list[dict]:
    if not path.is_file():
        raise DataError(f"Input file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        return list(iter_text_records(fh, path, field))


def run(args: argparse.Namespace) -> int:
    from lmforge.guard import trust_run
    from lmforge.predict import load_predictor
    from lmforge.rundir import atomic_write_text

    if bool(args.text) == bool(args.input):
        raise DataError("Give either --text (repeatable) or --input FILE.jsonl, not both or neither.")
    if args.input and not args.output:
        raise DataError("--input needs --output FILE.jsonl for the predictions.")
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if (args.run is None) == (args.url is None):
        raise DataError("Give either a run directory or --url of a running server, not both or neither.")
    records = _read_jsonl(Path(args.input), args.text_field) if args.input else [{"text": t} for t in args.text]
    texts = [r[args.text_field] if args.input else r["text"] for r in records]
    if args.url:
        from lmforge.client import Client

        with Client(args.url, args.api_key, retries=3) as client:
            preds = [p for i in range(0, len(texts), args.batch_size)
                     for p in client.predict(texts[i : i + args.batch_size], model=args.model)]
    else:
        check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
        predictor = load_predictor(args.run, variant=args.variant, verified=check)
        preds = predictor.predict(texts, batch_size=args.batch_size, progress=args.progress and bool(args.input))
    if args.input:
        lines = [json.dumps({**r, "prediction": p}, ensure_ascii=False) for r, p in zip(records, preds, strict=True)]
        atomic_write_text(args.output, "\n".join(lines) + ("\n" if lines else ""))
        print(f"wrote {len(lines)} predictions to {args.output}")
    else:
        dump([{"text": t, **p} for t, p in zip(texts, preds, strict=True)])
    return 0
