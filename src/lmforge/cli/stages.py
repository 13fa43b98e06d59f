"""`lmforge run | prepare | train | evaluate`: the lifecycle stages over a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmforge.cli._common import add_progress_arg, add_set_arg, add_spec_args, metrics_line, say, sign_after


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
    add_progress_arg(p)
    p.set_defaults(func=run)

    p = sub.add_parser(
        "prepare", help="load, clean, dedupe and split the data",
        epilog="example: lmforge prepare my-spec.yaml --out runs/exp1",
    )
    add_spec_args(p)
    p.add_argument("--out", help="run directory (default: runs/<spec name>)")
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
    add_set_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=train)

    p = sub.add_parser(
        "evaluate", help="evaluate a trained run on its test split",
        epilog="example: lmforge evaluate runs/exp1",
    )
    p.add_argument("run", help="run directory with a trained model")
    p.set_defaults(func=evaluate)


def run(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec
    from lmforge.pipeline import run_all

    spec = load_spec(args.spec, args.overrides)
    out = Path(args.out) if args.out else _default_out(spec.name)
    say(f"run: {spec.data.path or spec.data.dataset} + {spec.model.name} ({spec.train.method}) -> {out}")
    metrics = run_all(spec, out, progress=args.progress)
    sign_after(out)
    say(f"test: {metrics_line(metrics)}")
    say(f"report: {out / 'eval' / 'report.html'}")
    say(f"model card: {out / 'MODEL_CARD.md'}")
    return 0


def prepare(args: argparse.Namespace) -> int:
    from lmforge.config import load_spec
    from lmforge.pipeline import prepare_run

    spec = load_spec(args.spec, args.overrides)
    out = Path(args.out) if args.out else _default_out(spec.name)
    _run, report = prepare_run(spec, out)
    sign_after(out)
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
    cmd += [f"--set={o}" for o in args.overrides]
    cmd += [] if args.progress else ["--no-progress"]
    return subprocess.run(cmd, check=False).returncode


def train(args: argparse.Namespace) -> int:
    import os

    from lmforge.pipeline import load_run_spec
    from lmforge.rundir import RunDir
    from lmforge.train import train as train_model

    run_dir = RunDir(args.run)
    spec = load_run_spec(run_dir, args.overrides)
    if args.nproc_per_node != 1 and "WORLD_SIZE" not in os.environ:
        from lmforge.train import per_process_batch

        per_process_batch(spec.train.batch_size, max(args.nproc_per_node, 1))  # fail before spawning
        return _launch_torchrun(args)  # rank 0 of the launched processes reports and signs
    summary = train_model(spec, run_dir, resume=args.resume, progress=args.progress)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 reports and signs
        return 0
    sign_after(run_dir.root)
    workers = f" on {summary['world_size']} processes" if summary.get("world_size", 1) > 1 else ""
    say(f"trained {run_dir.model_dir}: {summary['steps']} steps in {summary['seconds']:.0f}s{workers}, "
        f"best val macro-F1 {summary['best_val_macro_f1']}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from lmforge.evaluate import evaluate as evaluate_run
    from lmforge.pipeline import load_run_spec
    from lmforge.rundir import RunDir

    run_dir = RunDir(args.run)
    metrics = evaluate_run(load_run_spec(run_dir), run_dir)
    sign_after(run_dir.root)
    say(f"test: {metrics_line(metrics)}")
    say(f"report: {run_dir.eval_dir / 'report.html'}")
    return 0
