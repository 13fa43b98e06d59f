"""Recommender: lmforge's text model and blend against popularity, ItemKNN, EASE and TF-IDF content.

MovieLens ml-latest-small from ``../shared/datasets/ml-latest-small`` (research, non-commercial
terms; read in place): ``original/ratings.csv`` (every rating is an interaction, as in the
dataset's own baselines) and ``items_text.csv`` (title, genres, tags). Each protocol is one
``lmforge recommend train`` run (``lmforge.apps.recommend.train_recommender``) in a child
process, which measures every model on the same split with full ranking:

- ``ratio``: a seeded 20 % of each user's positives; target: the blend's NDCG@10 > EASE's;
- ``loo``: each user's last positive by time (610 test users: noisy, about +-0.008 on HR@10);
- ``cold``: 20 % of the items held out with all their interactions, ranked among themselves;
  target: the text model's NDCG@10 >= 3x TF-IDF content similarity's (collaborative models
  have no interactions for these items and score nothing).

NDCG@10, HR@10 and Recall@20 for every model, and the training time, go to the JSON result.

Serving: the ratio protocol's recommender is then served by ``lmforge serve DIR`` (a real
process on loopback; unsigned, so ``--allow-unsigned``: its files are still checked against the
manifest) and loaded by ``--clients`` (32) keep-alive connections posting ``/v1/recommend`` back to
back for ``--serve-seconds`` per request form (``{user, k: 10}`` over the training users,
``{history, k: 10}`` with each test user's training items as a "new" history, ``{text, k: 10}``
with item titles), with ``bench/serve_load.py``'s raw-HTTP client in this process (so it shares
the cores with the server): p50/p99 latency and requests/s per form.

    .venv/bin/python bench/recommender.py --quick    # 50 users, their items, 8 steps
    .venv/bin/python bench/recommender.py            # everything (about an hour on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    REPO,
    SHARED_DATASETS,
    child_env,
    default_out,
    leave_workdir,
    log,
    read_job,
    run_worker,
    target,
    write_result,
    write_worker_result,
)
from serve_load import _free_port, _load, _stop, _wait_ready, serve_state

NAME = "recommender"
DATA = SHARED_DATASETS / "ml-latest-small"
PROTOCOLS = ("ratio", "loo", "cold")
MODELS = ("popularity", "itemknn", "ease", "tfidf", "text", "blend")
METRICS = ("NDCG@10", "HR@10", "Recall@20")
QUICK_USERS = 50


def worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.apps.recommend import train_recommender
    from lmforge.config import spec_from_dict

    start = time.perf_counter()
    metrics = train_recommender(spec_from_dict(job["spec"]), job["out"])
    return {"metrics": metrics, "seconds": round(time.perf_counter() - start, 2)}


def sample(workdir: Path, users: int) -> tuple[Path, Path]:
    """The ratings of the first ``users`` users and the texts of the items they rated."""
    ratings, items = workdir / "ratings.csv", workdir / "items_text.csv"
    keep_items: set[str] = set()
    with open(DATA / "original" / "ratings.csv", encoding="utf-8", newline="") as src, \
            open(ratings, "w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for row in reader:
            if int(row[0]) <= users:
                writer.writerow(row)
                keep_items.add(row[1])
    with open(DATA / "items_text.csv", encoding="utf-8", newline="") as src, \
            open(items, "w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        writer.writerows(row for row in reader if row[0] in keep_items)
    return ratings, items


def serve_bodies(recdir: Path, form: str, limit: int = 500) -> list[bytes]:
    """Request bodies of one form, from the recommender's own files (ids as in the input files)."""
    index = json.loads((recdir / "data" / "index.json").read_text(encoding="utf-8"))
    if form == "user":
        return [json.dumps({"user": u, "k": 10}).encode() for u in index["users"][:limit]]
    if form == "text":
        titles = [json.loads(line)["text"].split(". ")[0] for line in
                  (recdir / "data" / "items.jsonl").read_text(encoding="utf-8").splitlines()[:limit]]
        return [json.dumps({"text": t, "k": 10}).encode() for t in titles if t]
    histories: dict[str, list[tuple[int, str]]] = {}
    for line in (recdir / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        histories.setdefault(row["user"], []).append((row["n"], row["item"]))
    return [json.dumps({"history": [i for _, i in sorted(h)][-200:], "k": 10}).encode()
            for h in list(histories.values())[:limit]]


def serve_latency(recdir: Path, workdir: Path, clients: int, seconds: float) -> dict[str, Any]:
    """``lmforge serve recdir`` under ``clients`` connections, each request form in turn (see the module doc)."""
    workdir.mkdir(parents=True, exist_ok=True)
    state, token, config = serve_state(workdir, max(256, 4 * clients))
    port = _free_port()
    cmd = [sys.executable, "-m", "lmforge.cli.__main__", "serve", str(recdir), "--port", str(port), "--state",
           str(state), "--allow-unsigned", "--config", str(config)]
    out: dict[str, Any] = {"clients": clients, "seconds_per_form": seconds}
    with open(workdir / "serve.log", "wb") as logfile:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=logfile, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        _wait_ready(proc, port)
        out["startup_seconds"] = round(time.perf_counter() - started, 1)
        for form in ("user", "history", "text"):
            bodies = serve_bodies(recdir, form)
            asyncio.run(_load(port, token, [], min(8, clients), min(3.0, seconds), bodies=bodies,
                              path="/v1/recommend"))  # warm-up
            out[form] = asyncio.run(_load(port, token, [], clients, seconds, bodies=bodies, path="/v1/recommend"))
            log(f"/v1/recommend {{{form}}}: {out[form]['req_per_s']} req/s, p50 {out[form]['p50_ms']} ms, "
                f"p99 {out[form]['p99_ms']} ms, errors {out[form]['errors']} ({clients} clients)")
    finally:
        out["peak_rss_bytes"] = _stop(proc) if proc.poll() is None else 0
    return out


def spec_for(protocol: str, ratings: Path, items: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": f"bench-recommender-{protocol}",
        "model": {"name": args.model, "max_length": args.max_length},
        "train": {"method": args.method, "learning_rate": args.lr, "batch_size": args.batch_size,
                  "max_steps": args.max_steps, "seed": args.seed, "track": []},
        "recommend": {
            "interactions": {"path": str(ratings), "user_column": "userId", "item_column": "movieId",
                             "rating_column": "rating", "time_column": "timestamp"},
            "items": {"path": str(items), "id_column": "movieId", "text_columns": ["title", "genres", "tags"]},
            "split": protocol, "seed": args.seed, "test_fraction": 0.2, "ease_lambda": 250.0,
            "text": {"enabled": not args.no_text, "max_pairs": args.max_pairs, "history_items": args.history_items, "epochs": args.epochs,
                     "temperature": args.temperature},
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_USERS} users and a few training steps: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/recommender[-quick].json)")
    ap.add_argument("--quick-users", type=int, default=QUICK_USERS, help="users kept by --quick")
    ap.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--method", choices=["full", "lora"], default="full")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-pairs", type=int, default=4000)
    ap.add_argument("--history-items", type=int, default=5)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--no-text", action="store_true", help="collaborative models and TF-IDF only (no text model)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent connections of the serving load (32)")
    ap.add_argument("--serve-seconds", type=float, default=None, help="load per request form (default 30; --quick 5)")
    ap.add_argument("--no-serve", action="store_true", help="skip the /v1/recommend latency")
    ap.add_argument("--keep", action="store_true", help="keep the recommender directories (path is printed)")
    ap.add_argument("--worker", choices=["lmforge"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, worker(job))
        return 0
    if not (DATA / "items_text.csv").is_file():
        log(f"{DATA} is absent (the shared datasets are not next to this clone); nothing to run")
        return 1
    if args.quick:
        args.max_pairs, args.max_steps = 256, args.max_steps or 8
    out = args.out or default_out(NAME, args.quick)
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-rec-"))
    results: dict[str, Any] = {}
    targets, summary = [], []
    try:
        ratings, items = (sample(workdir, args.quick_users) if args.quick
                          else (DATA / "original" / "ratings.csv", DATA / "items_text.csv"))
        for protocol in args.protocols:
            spec = spec_for(protocol, ratings, items, args)
            log(f"{protocol}: lmforge recommend train -> {workdir / protocol}")
            run = run_worker(__file__, "lmforge", {"spec": spec, "out": str(workdir / protocol)}, workdir, tag=protocol)
            m = run["metrics"]
            table = {name: {k: m["test"][name][k] for k in (*METRICS, "users")} for name in MODELS if name in m["test"]}
            results[protocol] = {"test": table, "val_ndcg_at_10": {n: v["NDCG@10"] for n, v in m["val"].items()},
                                 "blend_weights": m["blend"]["weights"], "selected": m["selected"],
                                 "seconds": m["seconds"], "text_model": m["text_model"], "data": m["data"],
                                 "peak_rss_bytes": run["process"]["peak_rss_bytes"], "spec": spec}
            log(f"{protocol}: " + ", ".join(f"{n} {v['NDCG@10']:.4f}" for n, v in table.items()) + " (NDCG@10)")
            ours, peer = ("text", "tfidf") if protocol == "cold" and "text" in table else ("blend", "ease")
            for metric in METRICS:
                a, b = table[ours][metric], table[peer][metric]
                summary.append({"metric": f"{protocol} {metric} ({ours} vs {peer})", "lmforge": a, "peer": b,
                                "ratio": a / b if b else None})
            summary.append({"metric": f"{protocol} training seconds (all models)", "lmforge": m["seconds"].get("total"),
                            "peer": m["seconds"].get("ease"), "ratio": None})
            if protocol == "ratio":
                targets.append(target("ratio NDCG@10: blend > EASE", table["blend"]["NDCG@10"], ">=",
                                      table["ease"]["NDCG@10"] + 1e-9))
                if not args.no_serve:
                    seconds = args.serve_seconds or (5.0 if args.quick else 30.0)
                    serving = serve_latency(workdir / protocol, workdir / "serve", args.clients, seconds)
                    results["serve"] = serving
                    for form in ("user", "history", "text"):
                        summary.append({"metric": f"/v1/recommend {{{form}}} p99 ms at {args.clients} clients",
                                        "lmforge": serving[form]["p99_ms"], "peer": None, "ratio": None})
            if protocol == "cold" and "text" in table:
                targets.append(target("cold NDCG@10: text >= 3x TF-IDF", table["text"]["NDCG@10"], ">=",
                                      3 * table["tfidf"]["NDCG@10"]))
    finally:
        leave_workdir(workdir, args.keep)
    notes = [
        "Full ranking: every item is a candidate except the user's training items (cold: only the held-out items).",
        "Every rating counts as an interaction (recommend.min_rating unset), as in the dataset README's baselines.",
        "The blend's weights (text, EASE, popularity; a grid on the simplex) are fitted on a validation split "
        "carved from training by the same protocol; the test split is read only to evaluate.",
        "/v1/recommend latency: the ratio recommender under lmforge serve, the load client in the same machine "
        "(2 cores shared with the server and, on this machine, with other work: the timings are noisy).",
    ]
    if args.quick:
        notes.append(f"QUICK MODE: {args.quick_users} users and a few training steps; the numbers are meaningless.")
    parameters = {k: getattr(args, k) for k in ("model", "method", "lr", "batch_size", "max_length", "max_pairs",
                                                "history_items", "epochs", "temperature", "max_steps", "seed")}
    write_result(out, NAME, quick=args.quick, peer="EASE (ratio, loo) / TF-IDF content (cold)", parameters=parameters,
                 results=results, ratios={}, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
