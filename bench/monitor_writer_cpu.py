"""CPU seconds of the monitor's writer process per stored prediction, drift checks included.

No server: a :class:`~lmforge.monitor.Monitor` in this process (its real writer process) is fed
one-record calls (texts from the run's test split), a drift check every 500 predictions
(``drift_min_interval_s`` 0) on a reference fitted on the run (cached in ``--reference``). The
writer's ``utime + stime`` (``/proc/PID/stat``) is read around the first 500 predictions (its first
check loads torch and the encoder) and around the next ``--n`` (steady state). ``--default-threads``
starts the writer without ``ONE_THREAD`` (torch and BLAS on their default pools), as before.

    .venv/bin/python bench/monitor_writer_cpu.py --run /tmp/mon-run
    .venv/bin/python bench/monitor_writer_cpu.py --run /tmp/mon-run --default-threads
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _harness import REPO, log
from monitor_cpu import cpu_seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a trained run (reference and texts)")
    ap.add_argument("--n", type=int, default=2000, help="predictions measured after the first 500 (default 2000)")
    ap.add_argument("--reference", type=Path, help="cache of the fitted reference (default RUN/../NAME-reference.json)")
    ap.add_argument("--default-threads", action="store_true", help="the writer on default thread pools (as before)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, _writer_link
    from lmforge.monitor._reference import ReferenceState, fit_reference

    ref_path = args.reference or args.run.resolve().parent / f"{args.run.name}-reference.json"
    if not ref_path.exists():
        log(f"fitting the reference of {args.run} (once, cached in {ref_path})")
        fit_reference(str(args.run), None, {}, 1000, verified=None).save(ref_path)
    state = ReferenceState.load(ref_path)
    lines = (args.run / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    if args.default_threads:
        _writer_link.ONE_THREAD.clear()
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.pop(key, None)
    labels = [str(x) for x in json.loads((args.run / "model" / "labels.json").read_text(encoding="utf-8"))["labels"]]
    url = f"sqlite:///{tempfile.mkdtemp(prefix='lmforge-bench-writer-')}/m.db"
    settings = MonitorSettings(url=url, drift_every=500, drift_min_interval_s=0.0)
    with Monitor(settings, labels) as monitor:
        pid = monitor.writer_pid
        if pid is None:
            raise RuntimeError("the monitor started no writer process")
        monitor.reference = state

        def feed(n: int, offset: int) -> None:
            scores = {label: 1.0 / len(labels) for label in labels}
            for i in range(n):
                monitor.record_many([PredictionRecord(
                    id=uuid.uuid4().hex, ts=time.time(), model="m", version="1", text=texts[(offset + i) % len(texts)],
                    label=labels[0], confidence=scores[labels[0]], scores=scores, latency_ms=3.0, key_id="k")])
                if i % 10 == 9:
                    time.sleep(0.01)
            monitor.flush(900)

        c0 = cpu_seconds(pid)
        feed(500, 0)
        c1 = cpu_seconds(pid)
        feed(args.n, 500)
        c2 = cpu_seconds(pid)
        result = {"threads": "default" if args.default_threads else "one", "first_500_cpu_s": round(c1 - c0, 2),
                  "steady_cpu_ms_per_prediction": round(1e3 * (c2 - c1) / args.n, 3), "checks": args.n // 500,
                  "written": monitor.written, "dropped": monitor.dropped, "failed": monitor.failed}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
