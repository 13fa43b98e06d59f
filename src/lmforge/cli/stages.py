"""`lmforge run | prepare | train | evaluate`: the lifecycle stages over a run directory.

Each re-signs the run it rewrote (``sign_after``), and a signature vouches for every file of the
run, so none re-signs what it did not verify: a signed run a stage starts from is verified first
(``prepare`` and ``run`` too, when their ``--out`` is an existing signed run: they keep its
``model/``, ``compressed/`` and ``eval/`` until they replace them), and before signing, every
file the stage did not write must be unchanged since. A new folder, or an unsigned run, has
nothing to verify: the stage creates it, or adopts it. ``evaluate`` also loads the model, so it
applies the load policy (``--public-key``, ``--allow-unsigned``) like ``lmforge predict``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmforge.cli._common import (
    add_progress_arg,
    add_set_arg,
    add_spec_args,
    add_strict_arg,
    metrics_line,
    say,
    sign_after,
    strict_status,
)

_PUBLIC_KEY_HELP = "the signer's public key, to verify a signed run first (default: $LMFORGE_PUBLIC_KEY, else your own)"


def _default_out(spec_name: str) -> Path:
    return Path("runs") / spec_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="prepare, train and evaluate in one go",
        description="Run every stage of a spec into one run directory.",
        epilog="examples:\n  lmforge run --out runs/demo\n  lmforge run recipes/airline-lora.yaml --out runs/lora "
        "--set train.epochs=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_args(p)
    p.add_argument("--out", help="run directory (default: runs/<spec name>)")
    p.add_argument("--public-key", help=_PUBLIC_KEY_HELP)
    add_progress_arg(p)
    add_strict_arg(p)
    p.set_defaults(func=run)

    p = sub.add_parser(
        "prepare", help="load, clean, dedupe and split the data",
        epilog="example: lmforge prepare my-spec.yaml --out runs/exp1",
    )
    add_spec_args(p)
    p.add_argument("--out", help="run directory (default: runs/<spec name>)")
    p.add_argument("--public-key", help=_PUBLIC_KEY_HELP)
    p.set_defaults(func=prepare)

    p = sub.add_parser(
        "train", help="fine-tune on a prepared run directory",
        epilog="examples:\n  lmforge train runs/exp1\n  lmforge train runs/exp1 --resume\n"
        "  lmforge train runs/exp1 --nproc-per-node 2        # data-parallel (DDP) through torchrun\n"
        "  torchrun --nproc-per-node 4 -m lmforge.cli train runs/exp1   # the same, launched by hand",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run directory made by `lmforge prepare`")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="train with N data-parallel processes on this machine (torchrun; gloo on CPU, "
                   "NCCL on GPUs); train.batch_size is the global batch")
    p.add_argument("--public-key", help=_PUBLIC_KEY_HELP)
    add_set_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=train)

    p = sub.add_parser(
        "evaluate", help="evaluate a trained run on its test split",
        epilog="examples:\n  lmforge evaluate runs/exp1\n  lmforge evaluate runs/gen --set evaluate.max_test=100   "
        "# a generative run: the first 100 test prompts\n\nThe run must verify as for `lmforge predict`: a valid "
        "signature, or --allow-unsigned;\na run whose files differ from its manifest is always refused.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run directory with a trained model")
    add_trust_args(p)
    add_set_arg(p)
    add_progress_arg(p)
    add_strict_arg(p)
    p.set_defaults(func=evaluate)


def add_trust_args(p: argparse.ArgumentParser) -> None:
    """``--public-key`` and ``--allow-unsigned`` as ``lmforge predict`` has them: for a verb that loads a run."""
    p.add_argument("--public-key", help="the signer's public key (default: $LMFORGE_PUBLIC_KEY, else your own)")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="load a run without signature.json (its files are still checked against the manifest)")


def resign(run: Any, check: Any, wrote: tuple[str, ...]) -> None:
    """Re-sign ``run`` after a stage, if nothing it did not write (``wrote``) changed since ``check`` verified it."""
    from lmforge.rundir import MANIFEST

    if check is not None:
        check.check_unchanged(skip=(MANIFEST, *wrote))
    sign_after(run)


def run(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec
    from lmforge.guard import trust_before_rewrite
    from lmforge.pipeline import run_all

    spec = load_spec(args.spec, args.overrides)
    out = Path(args.out) if args.out else _default_out(spec.name)
    check = trust_before_rewrite(out, args.public_key)
    say(f"run: {spec.data.path or spec.data.dataset} + {spec.model.name} ({spec.train.method}) -> {out}")
    metrics = run_all(spec, out, progress=args.progress)
    resign(out, check, ("data", "spec.yaml", "model", "eval", "MODEL_CARD.md"))  # compressed/ is as verified
    say(f"test: {metrics_line(metrics)}")
    say(f"report: {out / 'eval' / 'report.html'}")
    say(f"model card: {out / 'MODEL_CARD.md'}")
    return strict_status(args, metrics)


def prepare(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec
    from lmforge.guard import trust_before_rewrite
    from lmforge.pipeline import prepare_run

    spec = load_spec(args.spec, args.overrides)
    out = Path(args.out) if args.out else _default_out(spec.name)
    check = trust_before_rewrite(out, args.public_key)
    _run, report = prepare_run(spec, out)
    resign(out, check, ("data", "spec.yaml"))
    counts = report["counts"]
    say(f"prepared {out / 'data'}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _launch_torchrun(args: argparse.Namespace) -> int:
    """Re-run this ``train`` command under ``torch.distributed.run`` with N local processes."""
    import subprocess
    import sys

    from lmforge.errors import ConfigError

    if args.nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node must be at least 1, got {args.nproc_per_node}.")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc_per_node}",
           "-m", "lmforge.cli", "train", str(args.run)]
    cmd += ["--resume"] if args.resume else []
    cmd += ["--public-key", str(args.public_key)] if args.public_key else []
    cmd += [f"--set={o}" for o in args.overrides]
    cmd += [] if args.progress else ["--no-progress"]
    return subprocess.run(cmd, check=False).returncode


def train(args: argparse.Namespace) -> int:
    import os

    from lmforge.guard import trust_before_rewrite
    from lmforge.pipeline import load_run_spec
    from lmforge.rundir import RunDir
    from lmforge.train import train as train_model

    run_dir = RunDir(args.run)
    rank0 = os.environ.get("RANK", "0") == "0"
    check = trust_before_rewrite(run_dir, args.public_key) if rank0 else None  # rank 0 signs
    spec = load_run_spec(run_dir, args.overrides)
    if args.nproc_per_node != 1 and "WORLD_SIZE" not in os.environ:
        from lmforge.train import per_process_batch

        per_process_batch(spec.train.batch_size, max(args.nproc_per_node, 1))  # fail before spawning
        return _launch_torchrun(args)  # rank 0 of the launched processes reports and signs
    summary = train_model(spec, run_dir, resume=args.resume, progress=args.progress)
    if not rank0:  # under torchrun: rank 0 reports and signs
        return 0
    resign(run_dir.root, check, ("model", "spec.yaml"))
    workers = f" on {summary['world_size']} processes" if summary.get("world_size", 1) > 1 else ""
    best = (f"best val loss {summary['best_val_loss']}, {summary['tokens_per_second']:.0f} tokens/s"
            if summary.get("task") == "generate" else f"best val macro-F1 {summary['best_val_macro_f1']}")
    say(f"trained {run_dir.model_dir}: {summary['steps']} steps in {summary['seconds']:.0f}s{workers}, {best}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec
    from lmforge.errors import ConfigError
    from lmforge.evaluate import evaluate as evaluate_run
    from lmforge.evaluate import evaluate_generation, is_generative_run
    from lmforge.guard import trust_run
    from lmforge.pipeline import load_run_spec
    from lmforge.predict import load_generator, load_predictor
    from lmforge.rundir import FP32, RunDir

    run_dir = RunDir(args.run)
    check = trust_run(run_dir, args.public_key, allow_unsigned=args.allow_unsigned)
    spec = load_run_spec(run_dir)
    if args.overrides:  # for this evaluation only: the run's files stay as verified
        bad = [o for o in args.overrides if not o.startswith("evaluate.")]
        if bad:
            raise ConfigError(f"`lmforge evaluate --set` takes evaluate.* keys only, got {', '.join(bad)}. "
                              "Change the others with `lmforge train RUN --set ...` or a new run.")
        spec = load_spec(run_dir.spec_path, args.overrides)
    if is_generative_run(spec, run_dir):
        generator = load_generator(run_dir, FP32, verified=check)
        metrics = evaluate_generation(spec, run_dir, generator=generator, progress=args.progress)
    else:
        metrics = evaluate_run(spec, run_dir, load_predictor(run_dir, FP32, verified=check))
    resign(run_dir.root, check, ("eval", "MODEL_CARD.md"))
    say(f"test: {metrics_line(metrics)}")
    say(f"report: {run_dir.eval_dir / 'report.html'}")
    return strict_status(args, metrics)
