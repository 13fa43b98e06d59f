"""`lmforge compress RUN`: build compressed variants, measure them, select the fastest within a budget."""

from __future__ import annotations

import argparse

from lmforge.cli._common import say

EXAMPLE = """examples:
  lmforge compress runs/demo
  lmforge compress runs/demo --budget 0.5 --only onnx-int8-dynamic,distilled-int8
  lmforge predict runs/demo --text "@united lost my bag again"     # uses the selected variant

Variants: onnx-fp32, onnx-int8-dynamic, onnx-int8-static, torch-bf16, merged, pruned, distilled,
distilled-int8, pruned-int8, distilled-pruned, distilled-pruned-int8. Each lands in
RUN/compressed/<variant>/ with variant.json; the selection is RUN/compressed/selected, explained
in RUN/compressed/compression_report.md. --only pulls in what a variant builds on, reusing it
when it is already built from the current model."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compress", help="ONNX/int8/bf16/pruned/distilled variants, the fastest within an accuracy budget",
        description="Build compressed variants of a trained run, measure each on this machine and the test "
        "split, and select the fastest whose accuracy is within --budget points of fp32.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run directory with a trained model")
    # A string, parsed by the library, so a bad value gets lmforge's message rather than argparse's.
    p.add_argument("--budget", default="1.0", help="accuracy points (a generative run: ROUGE-L points) a variant "
                   "may lose against fp32 (default: 1.0)")
    p.add_argument("--only", help="comma-separated compressors to build (default: all that apply)")
    p.add_argument("--speed-by", choices=("batch_1", "batch_8", "batch_32"), default="batch_1",
                   help="latency that decides 'fastest' (default: batch_1)")
    p.add_argument("--calibration-size", type=int, default=256,
                   help="training texts for static int8, and for smoothing a causal LM's int8 (min 16)")
    p.add_argument("--smooth-alpha", type=float, default=0.8,
                   help="a generative run: SmoothQuant strength of its int8 variant, 0 for none (default: 0.8)")
    p.add_argument("--prune-sparsity", type=float, default=0.75,
                   help="fraction of heads and FFN neurons removed (default: 0.75)")
    p.add_argument("--recovery-steps", type=int, default=300, help="fine-tune steps after pruning")
    p.add_argument("--student-layers", type=int, default=None, help="layers of the distilled student (default: half)")
    p.add_argument("--distill-epochs", type=float, default=2.0, help="passes over the training split")
    p.add_argument("--distill-steps", type=int, default=0, help="distillation steps (overrides --distill-epochs)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="of recovery and distillation")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per batch size (median reported)")
    p.add_argument("--force-bf16", action="store_true", help="build torch-bf16 even where the CPU lacks fast bf16")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-test", type=int, default=300,
                   help="a generative run: test prompts each variant answers for ROUGE-L (default: 300)")
    p.add_argument("--max-new-tokens", type=int, default=64,
                   help="a generative run: longest scored answer, in tokens (default: 64)")
    p.add_argument("--timing-tokens", type=int, default=32,
                   help="a generative run: new tokens per timed answer (default: 32)")
    p.add_argument("--gen-repeats", type=int, default=3,
                   help="a generative run: timed runs per measurement, median reported (default: 3)")
    p.add_argument("--public-key",
                   help="the signer's public key, to verify a signed run first (default: $LMFORGE_PUBLIC_KEY, else your own)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmforge.cli.stages import resign
    from lmforge.compress import CompressOptions, compress, parse_budget, parse_only
    from lmforge.guard import trust_before_rewrite

    options = CompressOptions(
        budget=parse_budget(args.budget), only=parse_only(args.only), speed_by=args.speed_by,
        calibration_size=args.calibration_size, smooth_alpha=args.smooth_alpha, prune_sparsity=args.prune_sparsity,
        recovery_steps=args.recovery_steps, student_layers=args.student_layers, distill_epochs=args.distill_epochs,
        distill_steps=args.distill_steps, learning_rate=args.learning_rate, latency_repeats=args.repeats,
        force_bf16=args.force_bf16, seed=args.seed, gen_max_test=args.max_test,
        gen_max_new_tokens=args.max_new_tokens, gen_timing_tokens=args.timing_tokens, gen_repeats=args.gen_repeats,
    )
    check = trust_before_rewrite(args.run, args.public_key)  # a re-signature vouches for model/ and data/ too
    summary = compress(args.run, options, say=say)
    resign(args.run, check, ("compressed",))
    say(f"report: {args.run}/compressed/compression_report.md")
    say(f"selected: {summary['selected']}")
    return 0
