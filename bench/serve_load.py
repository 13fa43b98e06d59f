"""Serving under load: `lmforge serve` against a naive FastAPI + transformers pipeline server.

Contenders, one after another, each a server process on loopback serving the same run:

- **lmforge serve**: ``lmforge serve RUN`` (the run's selected compressed variant, else fp32; or
  ``--variant``): API keys, adaptive micro-batching, admission control;
- **lmforge serve --monitor**: the same, with every prediction stored (PII-redacted, SQLite) by
  the monitor's background writer: its cost on throughput (target <= 5 %; ``--no-monitor`` skips it),
  counted only when the store holds every prediction the server answered (read after its SIGTERM
  drain; a monitor that dropped records would look cheap);
- **naive peer**: FastAPI + ``transformers.pipeline("text-classification")`` on ``RUN/model``, one
  request at a time (the pipeline is called inside the ``async`` endpoint, as a first server
  usually does), no auth, served by uvicorn with one worker.

Load: ``--clients`` concurrent keep-alive connections (64) send one-text predict requests back to
back for ``--duration`` seconds (60; ``--quick``: 10) after a warm-up, texts cycled from the
run's test split. The load client speaks raw HTTP/1.1 over asyncio (httpx's async pool tops out
near 100 requests/s here and would measure itself) and runs in this process, so it shares the
cores with the server: on a 2-core machine both contenders pay that equally. Measured per
contender: successful requests/s, latency p50/p90/p99 of successful requests, error counts by
status, connection errors, the server's peak RSS. A 429 is counted as an error for the
throughput (and retried by the client only after its Retry-After).

The monitor's cost is small beside the run-to-run noise of a shared machine, so ``--rounds N``
runs the plain and the monitored server N times, alternating (ABAB...), and reports the median
of the rounds' cost (every round is in the result); ``--no-peer`` skips the naive peer.

Targets: lmforge requests/s >= 8x the peer's; lmforge p99 <= 1/3 of the peer's.

    .venv/bin/python bench/serve_load.py --quick                 # tiny run made here, ~3 min
    .venv/bin/python bench/serve_load.py --run runs/demo         # a trained (and compressed) run
    .venv/bin/python bench/serve_load.py --run runs/demo --no-peer --rounds 4 --duration 30   # --monitor's cost
"""

# No `from __future__ import annotations`: FastAPI must see the peer's request model (a local class) itself.
import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    REPO,
    child_env,
    default_out,
    leave_workdir,
    log,
    read_job,
    target,
    tiny_run,
    write_result,
)

NAME = "serve_load"
TARGETS = {"throughput_x": 8.0, "p99_fraction": 1 / 3}
FULL = {"clients": 64, "duration": 60.0, "warmup": 5.0}
QUICK = {"clients": 64, "duration": 10.0, "warmup": 2.0}


# -- the naive peer (runs in a child process) -------------------------------------------------------
def peer_server(job: dict[str, Any]) -> None:
    """FastAPI + transformers.pipeline, one request at a time."""
    import transformers
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    transformers.logging.set_verbosity_error()
    model_dir = str(Path(job["run"]) / "model")
    pipe = transformers.pipeline(
        "text-classification", model=model_dir, tokenizer=model_dir, top_k=None, device="cpu"
    )
    app = FastAPI()

    class Body(BaseModel):
        texts: list[str]

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/predict")
    async def predict(body: Body) -> dict[str, Any]:
        out = pipe(body.texts, truncation=True)
        return {
            "predictions": [
                {
                    "label": max(r, key=lambda x: x["score"])["label"],
                    "scores": {x["label"]: x["score"] for x in r},
                }
                for r in out
            ]
        }

    uvicorn.run(app, host="127.0.0.1", port=job["port"], log_level="warning", access_log=False)


# -- load generation (this process) ----------------------------------------------------------------
async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, token: str | None,
    path: str = "/v1/predict",
) -> tuple[int, dict[str, str]]:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed by the server")
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = raw.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


async def _load(
    port: int, token: str | None, texts: list[str], clients: int, seconds: float, *,
    bodies: list[bytes] | None = None, path: str = "/v1/predict",
) -> dict[str, Any]:
    """``clients`` keep-alive connections posting back to back: one-text predict bodies cycled from
    ``texts``, or the JSON ``bodies`` given (another route's: ``path``)."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    exceptions: dict[str, int] = {}
    start = time.monotonic()
    end = start + seconds

    async def client(i: int) -> None:
        reader = writer = None
        k = i
        while time.monotonic() < end:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                body = (bodies[k % len(bodies)] if bodies is not None
                        else json.dumps({"texts": [texts[k % len(texts)]]}).encode())
                k += clients
                t0 = time.perf_counter()
                status, headers = await _request(reader, writer, body, token, path)  # type: ignore[arg-type]
                elapsed = time.perf_counter() - t0
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200 and time.monotonic() <= end:
                    latencies.append(elapsed)
                elif status in (429, 503):
                    await asyncio.sleep(min(float(headers.get("retry-after", "1")), 1.0))
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                exceptions[type(exc).__name__] = exceptions.get(type(exc).__name__, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.monotonic() - start
    latencies.sort()

    def pct(q: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3, 2) if latencies else None
        )

    errors = sum(n for s, n in statuses.items() if s != "200") + sum(exceptions.values())
    return {
        "requests_ok": len(latencies),
        "req_per_s": round(len(latencies) / wall, 2),
        "wall_seconds": round(wall, 2),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 2) if latencies else None,
        "statuses": statuses,
        "connection_errors": exceptions,
        "errors": errors,
    }


# -- contenders ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, wait; the child's own peak RSS in bytes (from wait4)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, _status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return 0
    proc.returncode = 0
    return int(usage.ru_maxrss) * 1024


def stored_predictions(db: Path) -> int:
    """Predictions in a monitor store (SQLite, read only); 0 before it exists."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM predictions").fetchone()[0])


def contender(
    name: str,
    cmd: list[str],
    port: int,
    token: str | None,
    texts: list[str],
    p: dict[str, Any],
    workdir: Path,
    store: Path | None = None,
) -> dict[str, Any]:
    """One server under load. With ``store`` (its monitor database), also whether it stored every
    prediction it answered: a monitor that dropped records would look cheap."""
    logfile = workdir / f"{name}.log"
    before = stored_predictions(store) if store is not None else 0
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        _wait_ready(proc, port)
        ready_s = round(time.perf_counter() - started, 1)
        log(
            f"{name}: ready in {ready_s} s; warm-up {p['warmup']} s, then {p['clients']} clients for "
            f"{p['duration']} s"
        )
        warm = asyncio.run(_load(port, token, texts, min(8, p["clients"]), p["warmup"]))
        result = asyncio.run(_load(port, token, texts, p["clients"], p["duration"]))
    finally:
        rss = _stop(proc) if proc.poll() is None else 0  # SIGTERM: the monitor drains into its store
    result.update(startup_seconds=ready_s, peak_rss_bytes=rss, log=str(logfile))
    if store is not None:
        answered = warm["statuses"].get("200", 0) + result["statuses"].get("200", 0)
        result.update(predictions_answered=answered, predictions_stored=stored_predictions(store) - before)
        result["every_prediction_stored"] = result["predictions_stored"] == answered
        log(f"{name}: stored {result['predictions_stored']} of the {answered} predictions it answered")
    log(
        f"{name}: {result['req_per_s']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"errors {result['errors']}"
    )
    return result


_NO_PEER: dict[str, Any] = {"req_per_s": None, "p50_ms": None, "p99_ms": None, "errors": None,
                            "peak_rss_bytes": 0}


def _rounds(
    n: int, monitor: bool, lm_cmd: list[str], lm_port: int, mon_cmd: list[str], mon_port: int,
    token: str | None, texts: list[str], p: dict[str, Any], workdir: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``n`` rounds of the plain server then (with ``monitor``) the monitored one, alternating (ABAB...),
    so a neighbour's load on a shared machine falls on both alike. Returns the round with the median
    monitor cost (the plain server's only round without ``monitor``) and every round's numbers."""
    rounds: list[dict[str, Any]] = []
    for i in range(max(1, n)):
        tag = f" (round {i + 1}/{n})" if n > 1 else ""
        row: dict[str, Any] = {"lmforge": contender("lmforge", lm_cmd, lm_port, token, texts, p, workdir)}
        if monitor:
            row["lmforge-monitor"] = contender("lmforge-monitor", mon_cmd, mon_port, token, texts, p, workdir,
                                               store=workdir / "state" / "monitor.db")
            plain, mon = row["lmforge"]["req_per_s"], row["lmforge-monitor"]["req_per_s"]
            row["monitor_overhead_percent"] = round(100.0 * (1.0 - mon / plain), 2) if plain else None
            log(f"monitor cost{tag}: {row['monitor_overhead_percent']} % ({mon} vs {plain} req/s)")
        rounds.append(row)
    if not monitor:
        return {"lmforge": rounds[0]["lmforge"]}, rounds
    ordered = sorted(rounds, key=lambda r: r["monitor_overhead_percent"] if r["monitor_overhead_percent"] is not None
                     else float("inf"))
    median = ordered[(len(ordered) - 1) // 2]
    return {"lmforge": median["lmforge"], "lmforge-monitor": median["lmforge-monitor"]}, [
        {"lmforge_req_per_s": r["lmforge"]["req_per_s"], "monitor_req_per_s": r["lmforge-monitor"]["req_per_s"],
         "monitor_overhead_percent": r["monitor_overhead_percent"],
         "predictions_answered": r["lmforge-monitor"]["predictions_answered"],
         "predictions_stored": r["lmforge-monitor"]["predictions_stored"]} for r in rounds
    ]


def serve_state(workdir: Path, max_in_flight: int, threads: int | None = None) -> tuple[Path, str, Path]:
    """A server state folder holding one predict key, and a serve config for load benchmarks.

    The config leaves room for ``max_in_flight`` requests and sets no per-key rate (every client
    shares the one key): the benchmark measures batching, not refusals. Returns ``(state folder,
    the key's token, config path)``.
    """
    sys.path.insert(0, str(REPO / "src"))
    from lmforge.serve import ServeSettings, open_stores
    from lmforge.serve._admin import create_key

    state = workdir / "state"
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        token, _ = create_key(stores, "bench", "predict", actor="bench")
    config = workdir / "serve.yaml"
    config.write_text(
        f"limits:\n  max_in_flight: {max_in_flight}\n  request_timeout_s: 30\n"
        "registry_poll_s: 0\nauth:\n  rate_per_s: null\n" + (f"batching:\n  threads: {threads}\n" if threads else ""),
        encoding="utf-8",
    )
    return state, token, config


def quick_run(workdir: Path) -> Path:
    """A tiny airline-tweets run, trained a few steps (no compression: the fp32 model is served)."""
    return tiny_run(workdir, max_examples=300, max_steps=8)


def test_texts(run: Path, limit: int = 2000) -> list[str]:
    path = run / "data" / "test.jsonl"
    texts = [
        json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not texts:
        raise RuntimeError(f"{path} holds no texts")
    return texts[:limit]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run made here, 10 s per contender (~3 min)")
    ap.add_argument("--run", type=Path, help="trained run directory (full mode)")
    ap.add_argument("--variant", help="variant lmforge serves (default: the run's selected one, else fp32)")
    ap.add_argument("--clients", type=int, help="concurrent connections (default 64)")
    ap.add_argument("--duration", type=float, help="seconds of load per contender (default 60; quick 10)")
    ap.add_argument("--warmup", type=float,
                    help="seconds of lighter load (8 clients) before each measured window (default 5; quick 2)")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/serve_load[-quick].json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs)")
    ap.add_argument("--threads", type=int, help="batching.threads of lmforge serve (default: its own choice)")
    ap.add_argument("--no-monitor", dest="monitor", action="store_false",
                    help="skip the third contender: lmforge serve --monitor (prediction store on)")
    ap.add_argument("--no-peer", dest="peer", action="store_false",
                    help="skip the naive peer (measure lmforge alone, e.g. the cost of --monitor)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="plain/--monitor pairs run in alternating rounds (ABAB...); the monitor's cost is "
                         "the median of the rounds' ratios, every round reported (default 1)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "peer":
        peer_server(read_job(args.job))
        return 0
    if not args.quick and args.run is None:
        ap.error("give --run RUN_DIR (a trained run) or --quick")
    p = dict(QUICK if args.quick else FULL)
    for key in ("clients", "duration", "warmup"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)

    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-serve-"))

    try:
        run = quick_run(workdir) if args.quick else args.run.resolve()
        texts = test_texts(run)
        state, token, config = serve_state(workdir, max(256, 4 * p["clients"]), args.threads)
        lm_port, peer_port = _free_port(), _free_port()
        lm_cmd = [
            sys.executable,
            "-m",
            "lmforge.cli.__main__",
            "serve",
            str(run),
            "--port",
            str(lm_port),
            "--state",
            str(state),
            "--allow-unsigned",
            "--config",
            str(config),
        ]
        if args.variant:
            lm_cmd += ["--variant", args.variant]
        job_path = workdir / "peer.json"
        job_path.write_text(json.dumps({"run": str(run), "port": peer_port}), encoding="utf-8")
        peer_cmd = [sys.executable, __file__, "--worker", "peer", "--job", str(job_path)]

        mon_port = _free_port()
        mon_cmd = [*lm_cmd, "--monitor"]  # the same server with every prediction stored (redacted) in SQLite
        mon_cmd[mon_cmd.index(str(lm_port))] = str(mon_port)
        results, rounds = _rounds(args.rounds, args.monitor, lm_cmd, lm_port, mon_cmd, mon_port, token, texts, p,
                                  workdir)
        if args.peer:
            results["naive-peer"] = contender("naive-peer", peer_cmd, peer_port, None, texts, p, workdir)
        variant = (
            json.loads((run / "compressed" / "selected").read_text(encoding="utf-8"))["variant"]
            if not args.variant and (run / "compressed" / "selected").is_file()
            else (args.variant or "fp32")
        )
    finally:
        leave_workdir(workdir, args.keep)

    lm, peer = results["lmforge"], results.get("naive-peer", _NO_PEER)
    throughput_x = round(lm["req_per_s"] / peer["req_per_s"], 3) if peer["req_per_s"] else None
    p99_fraction = round(lm["p99_ms"] / peer["p99_ms"], 4) if lm["p99_ms"] and peer["p99_ms"] else None
    p50_fraction = round(lm["p50_ms"] / peer["p50_ms"], 4) if lm["p50_ms"] and peer["p50_ms"] else None
    ratios = {
        "throughput_x": throughput_x,
        "p99_fraction_of_peer": p99_fraction,
        "p50_fraction_of_peer": p50_fraction,
    }
    targets = [
        target("requests/s, lmforge / naive peer", throughput_x, ">=", TARGETS["throughput_x"], "x"),
        target("p99 latency, lmforge / naive peer", p99_fraction, "<=", round(TARGETS["p99_fraction"], 4)),
    ] if args.peer else []
    mon = results.get("lmforge-monitor")
    if mon is not None and lm["req_per_s"]:
        overhead = statistics.median(r["monitor_overhead_percent"] for r in rounds)
        ratios["monitor_overhead_percent"] = round(overhead, 2)
        ratios["monitor_overhead_percent_by_round"] = [r["monitor_overhead_percent"] for r in rounds]
        targets.append(target("throughput cost of --monitor (store every prediction)", overhead, "<=", 5.0, "%"))
        # The cost counts only if nothing was dropped: every answered prediction is in the store.
        unstored = sum(r["predictions_answered"] - r["predictions_stored"] for r in rounds)
        ratios["monitor_predictions_not_stored"] = unstored
        targets.append(target("answered predictions missing from the monitor store", unstored, "<=", 0))
    summary = [
        {
            "metric": f"requests/s at {p['clients']} clients",
            "lmforge": lm["req_per_s"],
            "peer": peer["req_per_s"],
            "ratio": throughput_x,
        },
        {"metric": "p50 latency ms", "lmforge": lm["p50_ms"], "peer": peer["p50_ms"], "ratio": p50_fraction},
        {"metric": "p99 latency ms", "lmforge": lm["p99_ms"], "peer": peer["p99_ms"], "ratio": p99_fraction},
        {
            "metric": "errors (non-200 + connection)",
            "lmforge": lm["errors"],
            "peer": peer["errors"],
            "ratio": None,
        },
        *(
            [{"metric": "requests/s with --monitor (vs without)", "lmforge": mon["req_per_s"],
              "peer": lm["req_per_s"], "ratio": round(mon["req_per_s"] / lm["req_per_s"], 3)}]
            if mon is not None and lm["req_per_s"] else []
        ),
        {
            "metric": "peak RSS MB",
            "lmforge": round(lm["peak_rss_bytes"] / 1e6, 1),
            "peer": round(peer["peak_rss_bytes"] / 1e6, 1),
            "ratio": None,
        },
    ]
    notes = [
        f"Each request carries one text from the run's test split; {p['clients']} keep-alive connections send "
        f"back to back for {p['duration']} s after a {p['warmup']} s warm-up; loopback only.",
        "The load client runs in the benchmark process and shares the machine's cores with the server under "
        "test; both contenders pay for it equally. Run on an otherwise idle machine (see machine.load_average_1m).",
        "The peer has no authentication; lmforge checks an API key on every request.",
        f"lmforge served variant: {variant}; the peer runs the fp32 model in RUN/model through the HF pipeline.",
        *([f"{args.rounds} rounds, plain then --monitor in each (ABAB...); the monitor's cost is the median of "
           "the rounds' ratios, and results.lmforge / lmforge-monitor are the round with that median."]
          if mon is not None and args.rounds > 1 else []),
    ]
    write_result(
        args.out or default_out(NAME, args.quick),
        NAME,
        quick=args.quick,
        peer="FastAPI + HF pipeline",
        parameters={**p, "run": str(run), "variant": variant, "rounds": args.rounds, "peer": args.peer},
        results={**results, "rounds": rounds},
        ratios=ratios,
        targets=targets,
        summary=summary,
        notes=notes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
