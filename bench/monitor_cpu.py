"""CPU seconds per request of `lmforge serve` with and without `--monitor`: where monitoring's cost is.

Throughput on a shared 2-core machine moves by more than the monitor costs, but the CPU time a
process spends per request barely does. This benchmark starts the server (plain, then
``--monitor``; ``--rounds`` times, alternating), warms it up, and sends a fixed number of one-text
predict requests (``--requests``, from ``--clients`` keep-alive connections, texts from the run's
test split). Before and after, it reads ``utime + stime`` (``/proc/PID/stat``) of the server and of
its store-writer child; with ``--monitor`` it waits, before the second reading, until the store
holds every prediction answered (so the writer's work is counted whole, and nothing was dropped).
It reports CPU milliseconds per request of each process, of the load client (this process), and
the monitor's extra CPU per request as a share of the plain server's plus the client's: on
saturated cores that is what ``--monitor`` costs in throughput.

    .venv/bin/python bench/monitor_cpu.py --run /tmp/mon-run                 # 3 rounds x 3000 requests
    .venv/bin/python bench/monitor_cpu.py --quick                            # tiny run made here
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import REPO, child_env, default_out, log, write_result
from serve_load import _free_port, _request, _wait_ready, quick_run, serve_state, test_texts

NAME = "monitor_cpu"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


async def send(port: int, token: str, texts: list[str], clients: int, n: int, offset: int) -> int:
    """``n`` requests from ``clients`` connections; how many answered 200 (anything else raises)."""
    left = [n]
    ok = [0]

    async def client(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        k = offset + i
        try:
            while left[0] > 0:
                left[0] -= 1
                body = json.dumps({"texts": [texts[k % len(texts)]]}).encode()
                k += clients
                status, _ = await _request(reader, writer, body, token)
                if status != 200:
                    raise RuntimeError(f"status {status}")
                ok[0] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return ok[0]


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM predictions").fetchone()[0])


def measure(cmd: list[str], port: int, token: str, texts: list[str], p: dict[str, Any], db: Path | None,
            logfile: Path) -> dict[str, Any]:
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port)
        base = stored(db) if db else 0  # the store is shared by the rounds
        answered = asyncio.run(send(port, token, texts, p["clients"], p["warmup"], 0))
        kids = children(proc.pid)
        if db is not None:
            _wait_stored(db, base, answered)
            _wait_idle(kids)  # a drift check the warm-up started (torch's import included) is not measured
        t0 = {pid: cpu_seconds(pid) for pid in [proc.pid, *kids]}
        c0 = os.times()
        w0 = time.monotonic()
        n = asyncio.run(send(port, token, texts, p["clients"], p["requests"], p["warmup"]))
        wall = time.monotonic() - w0
        c1 = os.times()
        held = _wait_stored(db, base + answered, n) if db is not None else None
        _wait_idle(kids)  # the drift checks these requests made due, counted whole
        t1 = {pid: cpu_seconds(pid) for pid in t0}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(600)  # a starved writer drains slowly
    server = t1[proc.pid] - t0[proc.pid]
    writer = sum(t1[k] - t0[k] for k in kids)
    client = (c1.user + c1.system) - (c0.user + c0.system)
    return {
        "requests": n,
        "wall_s": round(wall, 2),
        "server_cpu_ms_per_request": round(1e3 * server / n, 4),
        "writer_cpu_ms_per_request": round(1e3 * writer / n, 4),
        "client_cpu_ms_per_request": round(1e3 * client / n, 4),
        "stored": held,
        "writer_pids": kids,
    }


def _wait_idle(pids: list[int], timeout: float = 600.0) -> None:
    """Wait until these processes use (almost) no CPU for a second."""
    deadline = time.monotonic() + timeout
    last = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sum(cpu_seconds(p) for p in pids)
        if now - last < 0.03:
            return
        last = now


def _wait_stored(db: Path, base: int, n: int, timeout: float = 600.0) -> int:
    """Wait until the store holds ``base + n`` predictions; the number it holds beyond ``base``."""
    deadline = time.monotonic() + timeout
    while True:
        have = stored(db) - base
        if have >= n or time.monotonic() > deadline:
            return have
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a trained (and compressed) run")
    ap.add_argument("--quick", action="store_true", help="tiny run made here, 1 round of 1000 requests")
    ap.add_argument("--requests", type=int, help="requests measured per server (default 3000; quick 1000)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    ap.add_argument("--rounds", type=int, help="plain/--monitor pairs, alternating (default 3; quick 1)")
    ap.add_argument("--drift-every", type=int, default=1000,
                    help="monitor.drift_every of the monitored server (default 1000, with drift_min_interval_s 0: "
                         "a fixed number of drift checks per measured request, whatever the machine's speed)")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/monitor_cpu[-quick].json)")
    args = ap.parse_args()
    if not args.quick and args.run is None:
        ap.error("give --run RUN_DIR or --quick")
    p = {"requests": args.requests or (1000 if args.quick else 3000), "clients": args.clients,
         "rounds": args.rounds or (1 if args.quick else 3), "warmup": 1000,
         "drift_every": args.drift_every}
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-moncpu-"))
    try:
        run = quick_run(workdir) if args.quick else args.run.resolve()
        texts = test_texts(run)
        state, token, config = serve_state(workdir, 256)
        mon_config = workdir / "serve-monitor.yaml"
        mon_config.write_text(config.read_text(encoding="utf-8") + f"monitor:\n  drift_every: {args.drift_every}\n"
                              "  drift_min_interval_s: 0\n", encoding="utf-8")
        rounds = []
        for i in range(p["rounds"]):
            row = {}
            for name, monitor in (("plain", False), ("monitor", True)):
                port = _free_port()
                cmd = [sys.executable, "-m", "lmforge.cli.__main__", "serve", str(run), "--port", str(port),
                       "--state", str(state), "--allow-unsigned", "--config", str(mon_config if monitor else config)]
                db = None
                if monitor:
                    cmd.append("--monitor")
                    db = state / "monitor.db"
                row[name] = measure(cmd, port, token, texts, p, db, workdir / f"{name}-{i}.log")
                log(f"round {i + 1} {name}: {row[name]}")
            plain, mon = row["plain"], row["monitor"]
            base = plain["server_cpu_ms_per_request"] + plain["client_cpu_ms_per_request"]
            extra = (mon["server_cpu_ms_per_request"] + mon["writer_cpu_ms_per_request"]
                     + mon["client_cpu_ms_per_request"]) - base
            row["monitor_extra_cpu_ms_per_request"] = round(extra, 4)
            row["monitor_cpu_cost_percent"] = round(100 * extra / (base + extra), 2)
            log(f"round {i + 1}: monitoring costs {row['monitor_extra_cpu_ms_per_request']} CPU ms per request "
                f"({row['monitor_cpu_cost_percent']} % of the monitored total)")
            rounds.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def med(key: str, sub: str | None = None) -> float:
        return round(statistics.median(r[sub][key] if sub else r[key] for r in rounds), 4)

    cost = med("monitor_cpu_cost_percent")
    all_stored = all(r["monitor"]["stored"] == r["monitor"]["requests"] for r in rounds)
    summary = [
        {"metric": "server CPU ms / request", "lmforge": med("server_cpu_ms_per_request", "monitor"),
         "peer": med("server_cpu_ms_per_request", "plain"), "ratio": None},
        {"metric": "writer process CPU ms / request", "lmforge": med("writer_cpu_ms_per_request", "monitor"),
         "peer": 0.0, "ratio": None},
        {"metric": "load client CPU ms / request", "lmforge": med("client_cpu_ms_per_request", "monitor"),
         "peer": med("client_cpu_ms_per_request", "plain"), "ratio": None},
        {"metric": "monitoring's extra CPU ms / request", "lmforge": med("monitor_extra_cpu_ms_per_request"),
         "peer": None, "ratio": None},
        {"metric": "monitoring's share of CPU per request (%)", "lmforge": cost, "peer": None, "ratio": None},
    ]
    write_result(
        args.out or default_out(NAME, args.quick), NAME, quick=args.quick, peer="lmforge serve (no --monitor)",
        parameters={**p, "run": str(run)}, results={"rounds": rounds, "every_prediction_stored": all_stored},
        ratios={"monitor_cpu_cost_percent": cost},
        targets=[{"name": "CPU share of --monitor per request", "value": cost, "op": "<=", "threshold": 5.0,
                  "unit": "%", "goal": "<= 5%", "met": cost <= 5.0},
                 {"name": "every answered prediction stored", "value": float(all_stored), "op": ">=",
                  "threshold": 1.0, "unit": "", "goal": ">= 1", "met": all_stored}],
        summary=summary,
        notes=["CPU seconds from /proc/PID/stat (utime + stime) around a fixed number of requests; the writer's "
               "after the store holds every answered prediction.",
               "The share is the monitor's extra CPU (server + writer + client) over the monitored total per "
               "request: on saturated cores, roughly its cost in throughput."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
