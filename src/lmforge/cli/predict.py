"""`lmforge predict RUN`: label texts with a trained classifier, or answer prompts with a generative run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lmforge._jsonl import iter_prompt_records, iter_text_records
from lmforge.cli._common import dump, say
from lmforge.errors import DataError

EXAMPLE = """examples:
  lmforge predict runs/demo --text "@united lost my bag again"
  lmforge predict runs/demo --input texts.jsonl --output predictions.jsonl
  lmforge predict runs/demo --variant fp32 --text "on time, thanks"   # skip the selected variant
  lmforge predict runs/demo --text "lost my bag again" --explain      # + the words that pushed toward the label
  lmforge predict --url http://127.0.0.1:8000 --api-key $TOKEN --text "late again"   # a running server
  lmforge predict runs/answers --text "How do I reset my password?"   # a generative run prints the answer
  lmforge predict runs/answers --input prompts.jsonl --output answers.jsonl --max-new-tokens 256
  lmforge predict runs/answers --text "Hi" --temperature 0.7 --top-p 0.9 --seed 1 --stop "###"

A generative run (`task: generate`) reads {"prompt": ...} or {"messages": [...]} per --input line
and writes {"prompt", "response"} per line (other fields kept); decoding is greedy unless
--temperature is above 0, and deterministic under --seed.

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
    p.add_argument("--batch-size", type=int, default=None,
                   help="texts per model call (default: 64; prompts decoded together for a generative run: 8)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.add_argument("--url", help="ask a running `lmforge serve` instead of loading RUN")
    p.add_argument("--api-key", help="API key for --url (default: $LMFORGE_API_KEY)")
    e = p.add_argument_group("explanations (classifiers)")
    e.add_argument("--explain", action="store_true",
                   help="add per-word attributions toward the label (integrated gradients on a torch model, "
                        "occlusion on an ONNX variant; with --url, the server's POST /v1/explain)")
    e.add_argument("--explain-method", choices=("auto", "integrated-gradients", "occlusion"), default="auto",
                   help="attribution method (default: auto)")
    e.add_argument("--explain-label", default=None, help="explain this label instead of the predicted one")
    e.add_argument("--explain-top", type=int, default=5, help="words shown per text, strongest first (default: 5; "
                                                              "0: every word in text order)")
    e.add_argument("--explain-steps", type=int, default=32, help="integrated-gradients steps (default: 32)")
    p.add_argument("--model", help="model name on the server (with --url; default: the server's default)")
    g = p.add_argument_group("generative runs")
    g.add_argument("--max-new-tokens", type=int, default=None, help="longest answer in tokens (default: 128)")
    g.add_argument("--temperature", type=float, default=None, help="0 (default) decodes greedily; above 0 samples")
    g.add_argument("--top-p", type=float, default=None, help="sample from the smallest set of tokens of this mass "
                                                              "(default: 1)")
    g.add_argument("--seed", type=int, default=None, help="makes sampling repeatable")
    g.add_argument("--stop", action="append", default=None, help="end the answer before this text (repeatable)")
    p.set_defaults(func=run)


_GENERATION_FLAGS = ("max_new_tokens", "temperature", "top_p", "seed", "stop")


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
    if args.batch_size is not None and args.batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if (args.run is None) == (args.url is None):
        raise DataError("Give either a run directory or --url of a running server, not both or neither.")
    if args.run is not None:
        from lmforge.predict import run_kind

        if run_kind(args.run) == "causal-lm":
            if args.explain:
                raise DataError(f"--explain explains a classifier's label; {args.run} is a generative run.")
            return _generate(args)
    if given := [f"--{f.replace('_', '-')}" for f in _GENERATION_FLAGS if getattr(args, f) is not None]:
        raise DataError(f"{', '.join(given)} only apply to a generative run (task: generate); "
                        f"{args.run or args.url} is a classifier.")
    if args.explain_top < 0:
        raise DataError(f"--explain-top must be 0 (every word) or more, got {args.explain_top}.")
    args.batch_size = args.batch_size or 64
    records = _read_jsonl(Path(args.input), args.text_field) if args.input else [{"text": t} for t in args.text]
    texts = [r[args.text_field] if args.input else r["text"] for r in records]
    if args.url:
        from lmforge.client import Client

        with Client(args.url, args.api_key, retries=3) as client:
            preds = [p for i in range(0, len(texts), args.batch_size)
                     for p in client.predict(texts[i : i + args.batch_size], model=args.model)]
            if args.explain:
                for text, p in zip(texts, preds, strict=True):
                    got = client.explain(text, label=args.explain_label, method=args.explain_method,
                                         top=args.explain_top or None, model=args.model)
                    p["explanation"] = {k: got[k] for k in ("label", "score", "method", "truncated", "tokens")}
    else:
        check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
        predictor = load_predictor(args.run, variant=args.variant, verified=check)
        preds = predictor.predict(texts, batch_size=args.batch_size, progress=args.progress and bool(args.input))
        if args.explain:
            from lmforge.predict import explain

            explained = explain(predictor, texts, label=args.explain_label, method=args.explain_method,
                                steps=args.explain_steps)
            for p, e in zip(preds, explained, strict=True):
                p["explanation"] = e.to_dict(top=args.explain_top or None)
    if args.input:
        lines = [json.dumps({**r, "prediction": p}, ensure_ascii=False) for r, p in zip(records, preds, strict=True)]
        atomic_write_text(args.output, "\n".join(lines) + ("\n" if lines else ""))
        print(f"wrote {len(lines)} predictions to {args.output}")
    else:
        dump([{"text": t, **p} for t, p in zip(texts, preds, strict=True)])
    return 0


def _read_prompts(path: Path) -> list[tuple[dict[str, Any], Any]]:
    """``(record, prompt)`` per line: the ``messages`` turns when given (checked), else the ``prompt``."""
    from lmforge.predict import to_messages

    if not path.is_file():
        raise DataError(f"Input file not found: {path}")
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, record in iter_prompt_records(fh, path):
            if isinstance(record.get("messages"), list):
                try:
                    out.append((record, to_messages(record["messages"])))
                except DataError as exc:
                    raise DataError(f"{path} line {n}: {exc}") from None
            else:
                out.append((record, record["prompt"]))
    return out


def _prompt_text(record: dict[str, Any], prompt: Any) -> str:
    if isinstance(record.get("prompt"), str):
        return str(record["prompt"])
    users = [turn["content"] for turn in prompt if turn["role"] == "user"]
    return str(users[-1]) if users else ""


def _generate(args: argparse.Namespace) -> int:
    """Answer ``--text`` prompts (printed) or an ``--input`` file's (written) with a generative run."""
    from lmforge.guard import trust_run
    from lmforge.predict import load_generator
    from lmforge.rundir import atomic_write_text

    rows = _read_prompts(Path(args.input)) if args.input else [({"prompt": t}, t) for t in args.text]
    check = trust_run(args.run, args.public_key, allow_unsigned=args.allow_unsigned)
    generator = load_generator(args.run, args.variant, verified=check)
    if args.batch_size is not None:
        generator.batch_size = args.batch_size  # type: ignore[attr-defined]
    settings: dict[str, Any] = {f: getattr(args, f) for f in _GENERATION_FLAGS if getattr(args, f) is not None}
    answers = generator.generate([prompt for _, prompt in rows], **settings)
    if not args.input:
        for answer in answers:
            say(answer.text)
        return 0
    lines = [json.dumps({**record, "prompt": _prompt_text(record, prompt), "response": answer.text},
                        ensure_ascii=False) for (record, prompt), answer in zip(rows, answers, strict=True)]
    atomic_write_text(args.output, "\n".join(lines) + ("\n" if lines else ""))
    print(f"wrote {len(lines)} answers to {args.output}")
    return 0
