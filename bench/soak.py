"""Soak: `lmforge serve --monitor` degrades under abuse and loses nothing it acknowledged.

Against a real server process on loopback, one phase after another:

1. capacity: closed-loop clients until throughput stops growing, the server's goodput ceiling;
2. overload: many more clients than it can serve for a while: no 5xx, no client timeout, every
   429 carries Retry-After, and goodput stays near capacity (clients honour Retry-After);
3. slowloris: one client holds many connections open, sending a request header byte by byte;
   the other clients' p99 latency is compared with a baseline measured just before;
4. kill -9 under load, restart: every feedback label the server acknowledged is in the store;
5. SIGTERM under load: every in-flight request is answered (the readiness drain);
6. retention: the monitor store after N predictions with ``max_rows`` stays under its cap
   (through the monitor library, which is what the server's writer runs, at full speed).

The peer of a soak is the target itself ("what a production service promises"); the JSON result
has every count, and the README table the headline numbers.

    .venv/bin/python bench/soak.py                        # full phases (about 8 minutes)
    .venv/bin/python bench/soak.py --quick                # short phases (a smoke test)
    .venv/bin/python bench/soak.py --run runs/demo        # serve a run of your own
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH.parent / "src"))

from _harness import default_out, log, target, tiny_run, write_result  # noqa: E402
from tests._serve import Connection, Reply, create_keys, serve_process  # noqa: E402

FULL = {"capacity_s": 15, "overload_clients": 300, "overload_s": 60, "slowloris_connections": 200,
        "slowloris_s": 20, "kill_s": 8, "sigterm_clients": 64, "retention_rows": 1_000_000, "max_rows": 100_000}
QUICK = {"capacity_s": 5, "overload_clients": 100, "overload_s": 10, "slowloris_connections": 50,
         "slowloris_s": 5, "kill_s": 3, "sigterm_clients": 16, "retention_rows": 50_000, "max_rows": 5_000}


def _config(state: Path, max_rows: int) -> dict[str, Any]:
    return {
        "registry_poll_s": 0,
        # fewer admitted requests than overload clients, so the overload phase meets 429s
        "limits": {"max_in_flight": 128, "max_queued_texts": 2048, "request_timeout_s": 10,
                   "feedback_rate_per_s": None},
        "auth": {"rate_per_s": None},  # one key for every client: the soak measures the server's limits
        "monitor": {"url": f"sqlite:///{state / 'monitor.db'}", "max_rows": max_rows, "drift_every": 10**9},
    }


async def _clients(port: int, token: str, n: int, seconds: float, *, feedback: bool = False,
                   timeout: float = 30.0, stop: asyncio.Event | None = None) -> dict[str, Any]:
    """``n`` keep-alive clients back to back for ``seconds``; statuses, latencies, timeouts, acked feedback."""
    end = time.monotonic() + seconds
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    missing_retry_after = 0
    timeouts = 0
    acked: list[tuple[str, str]] = []

    async def client(i: int) -> None:
        nonlocal missing_retry_after, timeouts
        conn = Connection(port, token)
        k = 0
        try:
            while time.monotonic() < end and not (stop is not None and stop.is_set()):
                k += 1
                try:
                    reply: Reply = await asyncio.wait_for(
                        conn.request("POST", "/v1/predict", {"texts": [f"flight {i}.{k} was late again"]}), timeout
                    )
                except TimeoutError:
                    timeouts += 1
                    await conn.close()
                    continue
                except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                    statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                    await conn.close()
                    await asyncio.sleep(0.05)
                    continue
                statuses[str(reply.status)] = statuses.get(str(reply.status), 0) + 1
                if reply.status == 200:
                    latencies.append(reply.seconds)
                    if feedback:
                        pid = reply.json()["predictions"][0]["prediction_id"]
                        fb = await conn.request("POST", "/v1/feedback", {"prediction_id": pid, "label": "negative"})
                        if fb.status == 200:
                            acked.append((pid, "negative"))
                elif reply.status == 429:
                    retry = reply.headers.get("retry-after")
                    if retry is None:
                        missing_retry_after += 1
                    await asyncio.sleep(min(float(retry or 1), 1.0))
        finally:
            await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(n)), return_exceptions=True)
    wall = time.monotonic() - started
    return {"statuses": statuses, "wall_s": round(wall, 2), "goodput_rps": round(statuses.get("200", 0) / wall, 1),
            "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99), "timeouts": timeouts,
            "missing_retry_after": missing_retry_after, "acked_feedback": acked}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)


async def _slowloris(port: int, connections: int, seconds: float) -> int:
    """Open ``connections`` sockets and dribble a never-ending request header into each; how many stayed open."""
    writers = []
    for _ in range(connections):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            writers.append(w)
        except OSError:
            break
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for w in list(writers):
            try:
                w.write(b"X-a: b\r\n")
                await w.drain()
            except (ConnectionError, OSError):
                writers.remove(w)
        await asyncio.sleep(1.0)
    open_at_end = len(writers)
    for w in writers:
        w.close()
    return open_at_end


def _overload(port: int, token: str, p: dict[str, Any], capacity: float) -> dict[str, Any]:
    log(f"overload: {p['overload_clients']} clients for {p['overload_s']} s")
    r = asyncio.run(_clients(port, token, p["overload_clients"], p["overload_s"]))
    r["goodput_share_of_capacity"] = round(r["goodput_rps"] / capacity, 3) if capacity else None
    r.pop("acked_feedback")
    return r


def _slowloris_phase(port: int, token: str, p: dict[str, Any]) -> dict[str, Any]:
    log("slowloris: baseline, then the same clients beside a slowloris")
    base = asyncio.run(_clients(port, token, 8, p["slowloris_s"]))

    async def both() -> tuple[dict[str, Any], int]:
        sl = asyncio.ensure_future(_slowloris(port, p["slowloris_connections"], p["slowloris_s"] + 2))
        await asyncio.sleep(1.0)
        r = await _clients(port, token, 8, p["slowloris_s"])
        return r, await sl

    under, held = asyncio.run(both())
    ratio = round(under["p99_ms"] / base["p99_ms"], 2) if under["p99_ms"] and base["p99_ms"] else None
    return {"baseline_p99_ms": base["p99_ms"], "p99_ms": under["p99_ms"], "p99_ratio": ratio,
            "connections_held": held, "statuses": under["statuses"]}


def _feedback_in_store(db: Path, acked: list[tuple[str, str]]) -> int:
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT prediction_id, label FROM feedback").fetchall())
    return sum(1 for pid, label in acked if stored.get(pid) != label)


def _retention(workdir: Path, p: dict[str, Any]) -> dict[str, Any]:
    from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, new_prediction_id

    log(f"retention: {p['retention_rows']:,} predictions into a store capped at {p['max_rows']:,} rows")
    db = workdir / "retention.db"
    settings = MonitorSettings(url=f"sqlite:///{db}", max_rows=p["max_rows"], prune_interval_s=5, batch_size=2000,
                               queue_size=200_000, drift_every=10**9)
    t0 = time.time()
    with Monitor(settings, ["negative", "positive"]) as monitor:
        sizes = []
        at_cap = None
        chunk = min(10_000, p["max_rows"] // 2)
        for start in range(0, p["retention_rows"], chunk):
            recs = [PredictionRecord(id=new_prediction_id(), ts=t0 + (start + i) * 1e-3, model="m", version="1",
                                     text=f"my flight {start + i} was delayed, call me at 415 555 0100",
                                     label="negative", confidence=0.9, scores={"negative": 0.9, "positive": 0.1})
                    for i in range(chunk)]
            monitor.record_many(recs)
            monitor.flush(timeout=300)
            sizes.append(sum(f.stat().st_size for f in workdir.glob("retention.db*")))  # + WAL and shm
            if at_cap is None and start + chunk >= p["max_rows"]:
                at_cap = sizes[-1]  # the store's size when it first held max_rows predictions
        rows = monitor.store.count_predictions()
        lost = monitor.dropped + monitor.failed
    return {"predictions": p["retention_rows"], "rows_kept": rows, "max_rows": p["max_rows"], "dropped": lost,
            "store_bytes_at_cap": at_cap, "store_bytes_max": max(sizes), "store_bytes_end": sizes[-1],
            "growth_after_cap": round(max(sizes) / at_cap, 3) if at_cap else None}


def _kill9(work: Path, run: Path, state: Path, tokens: dict[str, str], p: dict[str, Any]) -> dict[str, Any]:
    log("kill -9 under load, then restart")
    with serve_process(work, run, "--monitor", "--allow-unsigned", "--state", str(state),
                       config=_config(state, p["max_rows"])) as srv:

        async def load_then_kill() -> dict[str, Any]:
            stop = asyncio.Event()
            task = asyncio.ensure_future(_clients(srv.port, tokens["predict"], 16, p["kill_s"] + 30, feedback=True,
                                                  timeout=5, stop=stop))
            await asyncio.sleep(p["kill_s"])
            os.kill(srv.proc.pid, signal.SIGKILL)
            stop.set()  # what was acknowledged before the kill is what must survive it
            return await task

        r = asyncio.run(load_then_kill())
    with serve_process(work, run, "--monitor", "--allow-unsigned", "--state", str(state),
                       config=_config(state, p["max_rows"])):
        lost = _feedback_in_store(state / "monitor.db", r["acked_feedback"])
    return {"acknowledged_feedback": len(r["acked_feedback"]), "lost_after_restart": lost}


def _sigterm(work: Path, run: Path, state: Path, tokens: dict[str, str], p: dict[str, Any]) -> dict[str, Any]:
    log(f"SIGTERM with {p['sigterm_clients']} requests in flight")
    with serve_process(work, run, "--monitor", "--allow-unsigned", "--state", str(state),
                       config={**_config(state, p["max_rows"]), "drain_s": 2.0}) as srv:

        async def inflight() -> list[Any]:
            payload = {"texts": [f"stuck on the tarmac {i} for hours" for i in range(16)]}
            conns = [Connection(srv.port, tokens["predict"]) for _ in range(p["sigterm_clients"])]
            tasks = [asyncio.ensure_future(c.request("POST", "/v1/predict", payload)) for c in conns]
            await asyncio.sleep(0.3)
            srv.proc.send_signal(signal.SIGTERM)
            out = await asyncio.gather(*tasks, return_exceptions=True)
            for c in conns:
                await c.close()
            return out

        replies = asyncio.run(inflight())
        code = srv.proc.wait(120)
    failed = sum(1 for r in replies if not isinstance(r, Reply) or r.status != 200)
    return {"in_flight": len(replies), "failed": failed, "exit_code": code}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run to serve (default: minilm-l6 trained briefly on "
                        "400 airline tweets: the same model size, so the same serving cost)")
    parser.add_argument("--quick", action="store_true", help="short phases (a smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    p = dict(QUICK if args.quick else FULL)
    work = Path(tempfile.mkdtemp(prefix="lmforge-soak-"))
    run = tiny_run(work, max_examples=400, max_steps=20) if args.run is None else args.run.resolve()
    state = work / "state"
    tokens = create_keys(state)
    results: dict[str, Any] = {}
    with serve_process(work, run, "--monitor", "--allow-unsigned", "--state", str(state),
                       config=_config(state, p["max_rows"])) as srv:
        asyncio.run(_clients(srv.port, tokens["predict"], 32, 3))  # warm-up: caches, first batches
        log(f"capacity: closed loop, 64 clients for {p['capacity_s']} s")
        cap = asyncio.run(_clients(srv.port, tokens["predict"], 64, p["capacity_s"]))
        cap.pop("acked_feedback")
        results["capacity"] = cap
        results["overload"] = _overload(srv.port, tokens["predict"], p, cap["goodput_rps"])
        results["slowloris"] = _slowloris_phase(srv.port, tokens["predict"], p)
    results["kill9"] = _kill9(work, run, state, tokens, p)
    results["sigterm"] = _sigterm(work, run, state, tokens, p)
    results["retention"] = _retention(work, p)
    over, sl, ret = results["overload"], results["slowloris"], results["retention"]
    five_xx = sum(n for s, n in over["statuses"].items() if s.startswith("5"))
    targets = [
        target("overload: 5xx responses", five_xx, "<=", 0),
        target("overload: client timeouts", over["timeouts"], "<=", 0),
        target("overload: 429 without Retry-After", over["missing_retry_after"], "<=", 0),
        target("overload: goodput / capacity", over["goodput_share_of_capacity"], ">=", 0.75),
        target("slowloris: others' p99 / baseline", sl["p99_ratio"], "<=", 2.0),
        target("kill -9: acknowledged feedback lost", results["kill9"]["lost_after_restart"], "<=", 0),
        target("SIGTERM: failed in-flight requests", results["sigterm"]["failed"], "<=", 0),
        target("retention: rows kept / max_rows", ret["rows_kept"] / ret["max_rows"], "<=", 1.0),
        target("retention: largest store size / size at the cap", ret["growth_after_cap"], "<=", 1.5),
    ]
    summary = [
        {"metric": "capacity (64 clients)", "lmforge": f"{cap['goodput_rps']} req/s, p99 {cap['p99_ms']} ms",
         "peer": "", "ratio": None},
        {"metric": f"overload ({p['overload_clients']} clients, {p['overload_s']} s)",
         "lmforge": f"{over['goodput_rps']} req/s goodput, {five_xx} 5xx, {over['timeouts']} timeouts",
         "peer": "", "ratio": over["goodput_share_of_capacity"]},
        {"metric": f"slowloris ({sl['connections_held']} connections held)",
         "lmforge": f"p99 {sl['p99_ms']} ms vs {sl['baseline_p99_ms']} ms", "peer": "", "ratio": sl["p99_ratio"]},
        {"metric": "kill -9 + restart", "lmforge": f"{results['kill9']['lost_after_restart']} of "
         f"{results['kill9']['acknowledged_feedback']} acknowledged labels lost", "peer": "", "ratio": None},
        {"metric": "SIGTERM under load", "lmforge": f"{results['sigterm']['failed']} of "
         f"{results['sigterm']['in_flight']} in-flight failed", "peer": "", "ratio": None},
        {"metric": f"retention after {ret['predictions']:,} predictions",
         "lmforge": f"{ret['rows_kept']:,} rows (cap {ret['max_rows']:,}), {ret['store_bytes_max'] / 1e6:.1f} MB max",
         "peer": "", "ratio": None},
    ]
    write_result(args.out or default_out("soak", args.quick), "soak", quick=args.quick, peer="target",
                 parameters=p, results=results, ratios={}, targets=targets, summary=summary,
                 notes=["Loopback only; one server process, one API key with no per-key rate (auth.rate_per_s: null).",
                        "Retention is measured through the monitor library at full speed, not over HTTP."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
