"""Sentiment watch: does `lmforge watch` alert on the weeks that mattered, and how good are its alerts?

One run, five parts:

1. Models: a sentiment run (Bearish / Bullish / Neutral) and a topic run (20 topics) trained by
   ``lmforge run`` on ``../shared/datasets/twitter_financial_news`` (its valid split is the test
   split, so the held-out tweets below are never trained on); full mode compresses both
   (``lmforge compress``) and scores with their selected variants.
2. Real incident: the dated gold-news headlines (2000-2019, parsed at run time, never modified)
   in weekly windows, ``negative_count`` per week, every detector: does the week of the April 2013
   gold crash (2013-04-15 .. 2013-04-21) alert, and how many other weeks do? Once scored by the
   sentiment run, once with the file's own Price Sentiment labels (the oracle: what the detectors do
   with perfect sentiment).
3. Injected surges (``_watch_inject.py``): a calm stream of held-out tweets (480 hourly windows of
   about 30, drawn from the valid split without half of its Bearish tweets) with 20 seeded surges
   of the other Bearish half per seed, planted by ``lmforge.apps.watch.inject_surges`` half a day
   apart; precision, recall and delay per detector, at its default threshold and at the threshold
   ``lmforge.apps.watch.calibrate_thresholds`` gives it for 0.5 % false alarms per window on calm
   streams of other seeds: every detector, the fixed rule included, at one false-alarm rate.
4. PhraseBank (``_watch_phrasebank.py``): sentiment runs on the all-agree and 50-agree sentences, each on
   its own seeded split, against TF-IDF + logistic regression on the same split.
5. Throughput: texts/s of sentiment + topic scoring over the gold stream; and live, through
   ``POST /v1/ingest`` of a real server (uvicorn on loopback, in this process; one client posting
   the gold stream in time order, ``limits.max_texts`` = 64 items per request): texts/s end to end,
   and whether the live alerts are the replay's (every window the live watch has closed).

    .venv/bin/python bench/sentiment_watch.py --quick   # 600 / 1,500 tweets, 30 steps per run, 1 seed
    .venv/bin/python bench/sentiment_watch.py           # full training sets, compressed variants, 3 seeds
    .venv/bin/python bench/sentiment_watch.py --runs DIR  # reuse the runs a --keep run left in DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import SHARED_DATASETS, default_out, leave_workdir, lmforge, log, target, write_result
from _watch_inject import injected
from _watch_phrasebank import phrasebank

NAME = "sentiment_watch"
TWITTER = SHARED_DATASETS / "twitter_financial_news"
GOLD = SHARED_DATASETS / "gold_news_sinha_khandait" / "gold-dataset-sinha-khandait.csv"
PHRASEBANK = SHARED_DATASETS / "financial_phrasebank" / "phrasebank_all.csv"
CRASH_WEEK = "2013-04-15T00:00:00+00:00"
DETECTORS = ("cusum", "ewma", "fixed", "page-hinkley", "zscore")
GOALS = {"precision": 0.8, "recall": 0.9}
FIXED_SHARE = 0.25
"""The fixed-threshold rule's negative share: about three times the calm stream's Bearish share (7-8 %)."""


def _labelled_csv(src: Path, dst: Path, names: dict[str, str]) -> Path:
    """The tweets with their label names (the shared files hold label ids)."""
    with src.open(encoding="utf-8", newline="") as fh, dst.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for row in csv.DictReader(fh):
            writer.writerow([row["text"], names[row["label"]]])
    return dst


def train_runs(workdir: Path, quick: bool, seed: int) -> dict[str, Path]:
    """The sentiment and topic runs (``lmforge run``, then ``lmforge compress`` in full mode)."""
    names = json.loads((TWITTER / "labels.json").read_text(encoding="utf-8"))
    runs = {}
    for task, prefix in (("sentiment", "sent"), ("topic", "topic")):
        train = _labelled_csv(TWITTER / task / f"{prefix}_train.csv", workdir / f"{task}_train.csv", names[task])
        test = _labelled_csv(TWITTER / task / f"{prefix}_valid.csv", workdir / f"{task}_valid.csv", names[task])
        run = workdir / f"{task}-run"
        args = ["run", "--out", str(run), "--no-progress", "--set", f"data.path={train}", "--set",
                f"data.test_path={test}", "--set", "model.max_length=64", "--set", f"data.seed={seed}",
                "--set", "train.track=[]"]
        if quick:  # the topic run keeps enough rows for its rarest class (IPO: 0.26 % of the tweets)
            args += ["--set", f"data.max_examples={600 if task == 'sentiment' else 1500}", "--set",
                     "train.max_steps=30", "--set", "data.min_per_class=2"]
        log(f"{task}: lmforge run -> {run}")
        lmforge(*args, timeout=7200)
        if not quick:
            lmforge("compress", str(run), timeout=7200)
        runs[task] = run
    return runs


class Oracle:
    """The gold file's own Price Sentiment as a 'classifier' (a text's label looked up): the detectors'
    result with perfect sentiment, beside the model's."""

    def __init__(self, label_of: dict[str, str]) -> None:
        self.label_of, self.labels, self.max_length = label_of, ["negative", "other"], 0

    def predict_proba(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        neg = np.array([self.label_of.get(t) == "negative" for t in texts], dtype=np.float32)
        return np.stack([neg, 1 - neg], axis=1)

    def predict(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        from lmforge.predict import to_predictions

        return to_predictions(self.labels, self.predict_proba(texts))


def gold_incident(sentiment: Any, topic: Any, workdir: Path) -> dict[str, Any]:
    """Weekly negative counts of the gold headlines, every detector, model-scored and oracle."""
    from lmforge.apps.watch import Scorer, aggregate, detect_all, read_stream
    from lmforge.config import WatchConfig

    cfg = WatchConfig(sentiment_run="-", negative_label="Bearish", window="7d", metric="negative_count",
                      min_count=5, baseline=26, time_field="Dates", text_field="News", actions=[])
    stream = read_stream(GOLD, time_field=cfg.time_field, text_field=cfg.text_field, max_bad_share=0.05)
    with GOLD.open(encoding="utf-8", newline="") as fh:
        label_of = {r["News"]: r["Price Sentiment"] for r in csv.DictReader(fh, delimiter="\t")}
    out: dict[str, Any] = {"texts": len(stream.rows), "skipped": stream.bad}
    for name, scorer, label in (("model", Scorer(sentiment, "Bearish", topic), "Bearish"),
                                ("oracle", Scorer(Oracle(label_of), "negative"), "negative")):
        scored = scorer.score(stream.texts)
        if name == "model":
            out["throughput_texts_per_s"] = round(scored.texts_per_s, 1)
            out["topics_scored"] = topic is not None
            scored.topics = ["all"] * len(scored.topics)  # the crash is a gold-wide event: one series
        windows = aggregate(stream.times, list(scored.negative), list(scored.negative_proba), scored.topics,
                            cfg.window_s)
        per = {}
        for det in DETECTORS:
            if det == "fixed":
                continue  # a fixed count threshold means nothing across 20 years of changing volume
            verdicts = detect_all(windows, cfg, det, None)["all"]
            alerted = [v.window for v in verdicts if v.alert]
            per[det] = {"crash_week_alerts": any(w.start == _ts(CRASH_WEEK) for w in alerted),
                        "other_weeks_alerting": sum(w.start != _ts(CRASH_WEEK) for w in alerted),
                        "weeks_judged": sum(v.score is not None for v in verdicts),
                        "alert_weeks": [_iso(w.start) for w in alerted]}
        out[name] = {"negative_label": label, "negative_share": float(np.mean(scored.negative)), "detectors": per}
    return out


def _ts(iso: str) -> float:
    from lmforge.apps.watch import parse_time

    return float(parse_time(iso) or 0.0)


def _iso(ts: float) -> str:
    from lmforge.apps.watch import iso

    return iso(ts)


def live_ingest(sentiment: Any, topic: Any, workdir: Path, batch: int = 64) -> dict[str, Any]:
    """The gold stream POSTed to ``/v1/ingest`` of a real server, in time order: texts/s, and its alerts
    against a replay of the same stream scored in the same chunks (per topic, weekly negative counts,
    zscore), with how many labels change when the stream is scored at once instead."""
    import httpx
    import uvicorn

    from lmforge.apps.watch import Scorer, WatchExtension, aggregate, alert_lines, detect_all, read_stream
    from lmforge.config import WatchConfig
    from lmforge.serve import ServeSettings, create_app, create_key, open_stores, settings_from_dict

    cfg = WatchConfig(sentiment_run="-", negative_label="Bearish", window="7d", metric="negative_count",
                      min_count=5, baseline=26, time_field="Dates", text_field="News", actions=[])
    stream = read_stream(GOLD, time_field=cfg.time_field, text_field=cfg.text_field, max_bad_share=0.05)
    scorer = Scorer(sentiment, "Bearish", topic)
    state = workdir / "ingest-state"
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        token, _ = create_key(stores, "bench", "predict", actor="bench", rate_per_s=None)
    settings = settings_from_dict({"state_dir": str(state), "registry_poll_s": 0, "limits": {"max_texts": batch}})
    ext = WatchExtension(cfg, source=str(GOLD.name), scorer=scorer)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, [ext]), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    items = [{"time": r.time, "text": r.text} for r in stream.rows]
    counts = {"accepted": 0, "late": 0, "malformed": 0}
    live_alerts: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            http.post("/v1/ingest", json={"items": items[:batch]}).raise_for_status()  # warm-up, not timed
            started = time.perf_counter()
            for i in range(batch, len(items), batch):
                reply = http.post("/v1/ingest", json={"items": items[i:i + batch]})
                reply.raise_for_status()
                body = reply.json()
                for k in counts:
                    counts[k] += body[k]
                live_alerts += body["alerts"]
            seconds = time.perf_counter() - started
            view = http.get("/v1/watch").json()
    finally:
        server.should_exit = True
        thread.join(60)
    # The replay scores the texts in the requests' chunks: a dynamic-int8 variant's scores depend on the
    # batch a text is scored in (it quantizes activations per batch; fp32 and static int8 do not), so
    # scoring the whole stream at once flips near-tie labels. That is a property of the scorer, not of
    # the watch; it is counted below, beside the check.
    parts = [scorer.score(stream.texts[i:i + batch]) for i in range(0, len(stream.texts), batch)]
    negative = [bool(x) for part in parts for x in part.negative]
    negative_proba = [float(x) for part in parts for x in part.negative_proba]
    topics = [t for part in parts for t in part.topics]
    whole = scorer.score(stream.texts)
    flips = {"negative": int(sum(a != bool(b) for a, b in zip(negative, whole.negative, strict=True))),
             "topic": int(sum(a != b for a, b in zip(topics, whole.topics, strict=True)))}
    replayed = alert_lines(detect_all(aggregate(stream.times, negative, negative_proba, topics, cfg.window_s), cfg),
                           cfg.detector)
    closed = [a for a in replayed if a["window_start"] < view["newest_window_start"]]
    key = ("time", "topic", "value", "n")
    return {"texts": len(items) - batch, "batch": batch, "seconds": round(seconds, 2),
            "texts_per_s": round((len(items) - batch) / seconds, 1), "rows": counts,
            "live_alerts": len(view["alerts"]), "replay_alerts_in_closed_windows": len(closed),
            "live_matches_replay": [[a[k] for k in key] for a in view["alerts"]] == [[a[k] for k in key] for a in closed],
            "alerts_in_responses": len(live_alerts),
            "labels_changed_scoring_the_stream_at_once": flips}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="600 tweets, 30 steps, 1 seed: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/sentiment_watch[-quick].json)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--surges", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the run directories (path is printed)")
    ap.add_argument("--runs", type=Path, help="reuse the sentiment-run and topic-run a --keep run left in this folder")
    args = ap.parse_args()
    if not TWITTER.is_dir() or not GOLD.is_file():
        log(f"{SHARED_DATASETS} lacks twitter_financial_news or gold_news_sinha_khandait; nothing to run")
        return 1
    from lmforge.predict import load_predictor

    workdir = Path(tempfile.mkdtemp(prefix="lmforge-watch-bench-"))
    try:
        if args.runs is not None:
            runs = {task: args.runs / f"{task}-run" for task in ("sentiment", "topic")}
            log(f"reusing {runs['sentiment']} and {runs['topic']}")
        else:
            runs = train_runs(workdir, args.quick, args.seed)
        sentiment, topic = load_predictor(runs["sentiment"]), load_predictor(runs["topic"])
        metrics = {t: json.loads((r / "eval" / "metrics.json").read_text(encoding="utf-8")) for t, r in runs.items()}
        log("gold news: weekly negative counts, model and oracle")
        gold = gold_incident(sentiment, topic, workdir)
        log("injected surges into held-out tweets")
        inj = injected(sentiment, TWITTER, [0] if args.quick else [0, 1, 2], [100] if args.quick else [100, 101, 102],
                       args.surges, DETECTORS, FIXED_SHARE, log)
        log("live: the gold stream through POST /v1/ingest")
        live = live_ingest(sentiment, topic, workdir)
        phrases = phrasebank(PHRASEBANK, workdir, quick=args.quick, seed=args.seed, lmforge=lmforge, log=log) \
            if PHRASEBANK.is_file() else None
    finally:
        leave_workdir(workdir, args.keep)
    targets = [target("gold crash week alerts (zscore, model)", float(gold["model"]["detectors"]["zscore"]
                                                                      ["crash_week_alerts"]), ">=", 1.0)]
    best = inj["totals"]["calibrated"]["zscore"]
    at = f"zscore at {inj['calibrated_thresholds']['zscore']['threshold']:g}, calibrated"
    targets += [target(f"injected precision ({at})", best["precision"] or 0.0, ">=", GOALS["precision"]),
                target(f"injected recall ({at})", best["recall"], ">=", GOALS["recall"]),
                target(f"detected within one window ({at})", best["within_one_window"], ">=", GOALS["recall"]),
                target("sentiment + topic texts/s", gold["throughput_texts_per_s"], ">=", 1000.0),
                target("live alerts = replay alerts (closed windows)", float(live["live_matches_replay"]), ">=", 1.0)]
    limits = {d: f"calibrated, {c['threshold']:g}" for d, c in inj["calibrated_thresholds"].items()}
    summary = [{"metric": f"injected {d} ({limits[d] if mode == 'calibrated' else 'default'}): precision / recall",
                "lmforge": r["precision"], "peer": r["recall"], "ratio": None}
               for mode, totals in inj["totals"].items() for d, r in totals.items()]
    summary += [{"metric": f"gold {d}: crash week alerts / other weeks alerting", "lmforge": g["crash_week_alerts"],
                 "peer": g["other_weeks_alerting"], "ratio": None} for d, g in gold["model"]["detectors"].items()]
    summary.append({"metric": "live /v1/ingest texts/s (sentiment + topic, 64 per request) / replay scoring texts/s",
                    "lmforge": live["texts_per_s"], "peer": gold["throughput_texts_per_s"], "ratio": None})
    summary.append({"metric": "sentiment test accuracy (twitter valid)", "lmforge": metrics["sentiment"]["accuracy"],
                    "peer": 0.830, "ratio": None})
    summary.append({"metric": "topic test accuracy (twitter valid)", "lmforge": metrics["topic"]["accuracy"],
                    "peer": 0.849, "ratio": None})
    for name, p in (phrases or {}).items():
        summary.append({"metric": f"PhraseBank {name} test accuracy (TF-IDF + LR on the same split)",
                        "lmforge": p["lmforge"]["accuracy"], "peer": p["peer"]["accuracy"],
                        "ratio": p["lmforge"]["accuracy"] / p["peer"]["accuracy"]})
    write_result(args.out or default_out(NAME, args.quick), NAME, quick=args.quick, peer="recall / other / TF-IDF",
                 parameters={"quick": args.quick, "seed": args.seed, "surges": args.surges,
                             "runs": str(args.runs) if args.runs else None},
                 results={"gold": gold, "injected": inj, "live_ingest": live, "sentiment_metrics": metrics["sentiment"],
                          "topic_metrics": metrics["topic"], "phrasebank": phrases},
                 ratios={}, targets=targets, summary=summary,
                 notes=["Peer column: recall for the injected rows, other weeks alerting for the gold rows, and the "
                        "TF-IDF + logistic regression accuracy the shared README states (0.830 sentiment, 0.849 "
                        "topic) for the twitter rows; the PhraseBank rows' peer is fitted here on the run's own split.",
                        "Injected rows: 'default' is each detector at its default threshold (the fixed rule at a 0.25 "
                        "share); 'calibrated' at the threshold calibrate_thresholds gives it for at most 0.5 % alerts "
                        "per window on calm streams of other seeds. The targets are judged on the calibrated zscore.",
                        "Timings are noisy: the machine's 2 cores are shared with other jobs.",
                        "Not measured here yet: the multi-task two-head model (it does not exist yet)."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
