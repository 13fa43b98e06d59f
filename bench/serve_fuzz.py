"""Schemathesis at depth against a real `lmforge serve` process: >= 1,000 generated requests, 0 server errors.

Runs the test suite's schemathesis test (``tests/e2e/test_serve_schemathesis.py``: every
operation of the OpenAPI schema, valid and invalid inputs, an admin key, every check but
``positive_data_acceptance``) with ``LMFORGE_FUZZ_EXAMPLES`` raised from the suite's 12 to
``--examples`` per operation and generation mode, and records the cases by status.

    .venv/bin/python bench/serve_fuzz.py              # 50 examples: ~1,300 cases, a few minutes
    .venv/bin/python bench/serve_fuzz.py --quick      # 12 examples, as in the test suite
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

from _harness import REPO, default_out, log, target, write_result

NAME = "serve_fuzz"
MARKER = "schemathesis cases by status:"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the test suite's depth (12 examples)")
    ap.add_argument("--examples", type=int, help="examples per operation and generation mode (default 50)")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/serve_fuzz[-quick].json)")
    args = ap.parse_args()
    examples = args.examples or (12 if args.quick else 50)
    env = dict(os.environ, LMFORGE_FUZZ_EXAMPLES=str(examples), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
           "tests/e2e/test_serve_schemathesis.py"]
    log(f"schemathesis with {examples} examples per operation and mode")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = round(time.perf_counter() - start, 1)
    line = next((ln for ln in proc.stdout.splitlines() if MARKER in ln), None)
    statuses: dict[int, int] = ast.literal_eval(line.split(MARKER, 1)[1].strip()) if line else {}
    cases = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-3000:], sep="\n")
    write_result(
        args.out or default_out(NAME, args.quick),
        NAME,
        quick=args.quick,
        peer="—",
        parameters={"examples_per_operation_and_mode": examples, "test": cmd[-1]},
        results={"statuses": {str(k): v for k, v in sorted(statuses.items())}, "cases": cases,
                 "server_errors": server_errors, "pytest_returncode": proc.returncode, "seconds": seconds},
        ratios={},
        targets=[
            target("generated requests", cases, ">=", 1000 if not args.quick else 200),
            target("5xx responses", server_errors, "<=", 0),
            target("schema conformance failures (pytest exit code)", proc.returncode, "<=", 0),
        ],
        summary=[
            {"metric": "schemathesis requests", "lmforge": cases, "peer": None, "ratio": None},
            {"metric": "5xx responses", "lmforge": server_errors, "peer": None, "ratio": None},
            {"metric": "seconds", "lmforge": seconds, "peer": None, "ratio": None},
        ],
        notes=["Valid and invalid requests for every operation with an admin key; a failed check (a 5xx, an "
               "undocumented status, a body that does not match the schema) fails the run."],
    )
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
