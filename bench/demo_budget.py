"""Demo budget: does `make demo` fit in 10 minutes and 4 GB on this machine?

Runs the exact command of `make demo` (``.venv/bin/lmforge run --out DIR``, the embedded
default job: airline-tweets + minilm-l6) in a child process into a temporary folder, and
measures its wall time and peak resident set size (the child's own ``ru_maxrss``).
There is no peer: the targets are absolute.

    .venv/bin/python bench/demo_budget.py --quick   # --set data.max_examples=300 --set train.max_steps=5
    .venv/bin/python bench/demo_budget.py           # the real demo (target: <= 10 minutes)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _harness import GB, LMFORGE, default_out, leave_workdir, log, run_child, target, write_result

NAME = "demo_budget"
WALL_TARGET_S = 600.0
RSS_TARGET_GB = 4.0
QUICK_SETS = ("data.max_examples=300", "train.max_steps=5")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"pass --set {' --set '.join(QUICK_SETS)}")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/demo_budget[-quick].json)")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="kill the demo after this many seconds (it then fails the wall-time target)")
    ap.add_argument("--keep", action="store_true", help="keep the demo's run directory (path is printed)")
    args = ap.parse_args()

    from lmforge.rundir import RunDir

    lmforge_bin = LMFORGE
    if not lmforge_bin.exists():
        log(f"{lmforge_bin} is missing: run `make setup` first.")
        return 1
    out = args.out or default_out(NAME, args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-demo-"))
    run_dir = workdir / "demo"
    cmd = [str(lmforge_bin), "run", "--out", str(run_dir)]
    for item in QUICK_SETS if args.quick else ():
        cmd += ["--set", item]
    output = workdir / "demo.log"
    text = ""
    try:
        log(f"$ {' '.join(cmd)}   (output: {output})")
        stats = run_child(cmd, timeout=args.timeout, log=output)
        text = output.read_text(encoding="utf-8", errors="replace")
        if stats["returncode"] != 0:
            print(text[-4000:], file=sys.stderr)
            why = "timed out" if stats["timed_out"] else f"exit code {stats['returncode']}"
            log(f"the demo failed ({why}); its output is above")
        manifest = RunDir(run_dir).read_manifest() if run_dir.exists() else {}
    finally:
        leave_workdir(workdir, args.keep)

    ok = stats["returncode"] == 0
    wall = stats["wall_seconds"]
    rss_gb = stats["peak_rss_bytes"] / GB
    train = manifest.get("train", {})
    metrics = manifest.get("metrics", {})
    results = {
        "command": " ".join(["lmforge", *cmd[1:3], "<tmp>", *cmd[4:]]),
        "succeeded": ok,
        "returncode": stats["returncode"],
        "wall_seconds": wall,
        "peak_rss_bytes": stats["peak_rss_bytes"],
        "peak_rss_gb": round(rss_gb, 3),
        "train": train,
        "test_metrics": metrics,
        "data_counts": manifest.get("data", {}).get("counts"),
        "output_tail": text[-1500:],
    }
    targets = [
        # A demo killed at --timeout ran at least that long: its wall time still answers the question.
        target("demo wall time (s)", wall if ok or stats["timed_out"] else None, "<=", WALL_TARGET_S, " s"),
        target("demo peak RSS (GB)", round(rss_gb, 3) if ok else None, "<=", RSS_TARGET_GB, " GB"),
    ]
    summary = [
        {"metric": "wall seconds (whole `lmforge run`)", "lmforge": wall, "peer": None, "ratio": None},
        {"metric": "peak RSS (GB)", "lmforge": rss_gb, "peer": None, "ratio": None},
        {"metric": "train seconds", "lmforge": train.get("seconds"), "peer": None, "ratio": None},
        {"metric": "test accuracy", "lmforge": metrics.get("accuracy"), "peer": None, "ratio": None},
    ]
    notes = [
        "The exact command of `make demo` (the embedded default spec), run into a temporary folder instead of "
        "runs/demo. Wall time covers the whole process: imports, prepare, train, evaluate, report.",
        "Peak RSS is the child's own ru_maxrss (from wait4). GB = 10^9 bytes.",
    ]
    if args.quick:
        notes.append(f"QUICK MODE: --set {' --set '.join(QUICK_SETS)}; not the real demo.")
    if stats["timed_out"]:
        notes.append(f"The demo was killed after --timeout {args.timeout:g} s: wall time is a lower bound, "
                     "peak RSS is not reported.")
    elif not ok:
        notes.append(f"The demo failed (exit code {stats['returncode']}); both targets count as missed.")
    write_result(out, NAME, quick=args.quick, peer="", parameters={"quick": args.quick, "sets": list(QUICK_SETS)
                 if args.quick else [], "timeout_seconds": args.timeout}, results=results, ratios={},
                 targets=targets, summary=summary, notes=notes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
