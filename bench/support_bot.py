"""Support bot: out-of-scope detection on Banking77-OOS, FAQ retrieval on Bitext, `bot ask` latency.

Out of scope, the Banking77-OOS protocol (Zhang et al., 2021): a seeded 50 of the 77 intents are
in scope, the other 27 out of scope. The bot (``lmforge.apps.support.build_bot``, minilm-l6) trains
on the in-scope intents of ``banking77_train.csv``; its out-of-scope calibration file is the
training questions of the 27 others; the test set is all of ``banking77_test.csv`` (the 27
intents' questions labeled ``oos``). Every ``bot.oos.method`` (each with the threshold that keeps
``--target`` of in-scope validation questions) is scored on that test set against the
closed-set accuracy of the same classifier on the 50 intents, and against the peer: TF-IDF +
logistic regression (C picked on validation) with a max-probability threshold calibrated to the
same in-scope recall on the same validation split. The OOS file shares its 27 intents with the test
set; ``unseen_oos_intents`` repeats every method with the examples of half of them only, scored on
the other half's questions (out-of-scope topics with no example at all).

FAQ retrieval, Bitext: a seeded 20 % of its questions are held out; the rest is the FAQ (and the
intent classifier's training data). hit@1 / MRR (the right intent's answer first) for the hybrid
score, BM25 alone and embeddings alone; ROUGE-L of the bot's answers against the held-out answer.

The operating point: ``--target`` 0.98, not the bot's default 0.95, because the protocol asks for
in-scope accuracy within 2 points of the closed set. A threshold that keeps 95 % of in-scope
questions turns away 5 % of them, most of which the classifier had right (at 0.95 the drop was 4.3
points, in the run of 2026-12-03), so 2 points needs about 98 %; OOS recall is then whatever the detector reaches
there. Every method and the peer are calibrated to the same target.

Latency: ``Bot.ask`` on one question at a time (p50/p99 over ``--latency-n`` test questions), with
the compressed intent model when ``--compress`` (the default outside quick mode).

Grounded answers, with ``--generator-run RUN`` (a generative run on Bitext questions): the Bitext
bot again, its generator rewriting each retrieved answer, on up to ``--grounded-n`` held-out
questions the generator did not train on (in neither its train nor its val split): ROUGE-L
against the held-out answer with and without the rewrite, and the share of rewrites the grounding
check replaced with the retrieved answer. Reported, no target.

    .venv/bin/python bench/support_bot.py --quick     # small subsets, few steps (~5 minutes)
    .venv/bin/python bench/support_bot.py             # the full protocol (~20 minutes)
    .venv/bin/lmforge run --set task=generate --out runs/answers  # the packaged 594-pair subset
    .venv/bin/python bench/support_bot.py --generator-run runs/answers
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    SHARED_DATASETS,
    default_out,
    leave_workdir,
    log,
    read_job,
    run_worker,
    target,
    write_result,
    write_worker_result,
)

NAME = "support_bot"
MODEL = "minilm-l6"
BANKING = SHARED_DATASETS / "banking77"
BITEXT = SHARED_DATASETS / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
METHODS = ("max-prob", "energy", "mahalanobis", "knn")
PEER_C_GRID = (0.5, 2.0, 8.0, 32.0)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict[str, str]], fields: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _train_spec(args: argparse.Namespace, name: str) -> dict[str, Any]:
    train: dict[str, Any] = {"method": "full", "learning_rate": args.lr, "batch_size": 32, "seed": args.seed,
                             "early_stopping_patience": 3, "epochs": args.epochs, "track": []}
    if args.quick:
        train.update(max_steps=args.quick_steps, eval_steps=args.quick_steps, epochs=1.0)
    return {"name": name, "model": {"name": MODEL, "max_length": 64}, "train": train}


def banking_job(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Write the Banking77-OOS files; return the worker's job."""
    train, test = _read_csv(BANKING / "banking77_train.csv"), _read_csv(BANKING / "banking77_test.csv")
    intents = sorted({r["category"] for r in train})
    in_scope = set(random.Random(args.seed).sample(intents, 50))
    rng = random.Random(args.seed)
    ins = [r for r in train if r["category"] in in_scope]
    oos = [r for r in train if r["category"] not in in_scope]
    if args.quick:  # 12 per in-scope intent: a plain random 600 can leave an intent below data.min_per_class
        ins = [r for intent in sorted(in_scope) for r in rng.sample([x for x in ins if x["category"] == intent], 12)]
        oos, test = rng.sample(oos, 100), rng.sample(test, 300)
    labeled = [{"text": r["text"], "intent": r["category"] if r["category"] in in_scope else "oos"} for r in test]
    spec = _train_spec(args, "bench-banking77-oos")
    test_in = [r for r in test if r["category"] in in_scope]  # the closed-set accuracy is measured on these
    spec["data"] = {"path": str(_write_csv(work / "b77_in.csv", ins, ["text", "category"])),
                    "test_path": str(_write_csv(work / "b77_test_in.csv", test_in, ["text", "category"])),
                    "label_column": "category", "dedupe": False, "val_fraction": 0.1, "seed": args.seed}
    spec["bot"] = {"oos": {"path": str(_write_csv(work / "b77_oos.csv", oos, ["text"])), "method": "auto",
                           "target_in_scope_recall": args.target}}
    return {"spec": spec, "labeled": labeled, "in_scope": sorted(in_scope), "compress": args.compress,
            "latency_n": args.latency_n, "target": args.target, "seed": args.seed,
            "oos_texts": [r["text"] for r in oos], "oos_categories": [r["category"] for r in oos],
            "test_categories": [r["category"] for r in test]}


def bitext_job(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows = [r for r in _read_csv(BITEXT) if r["instruction"].strip() and r["response"].strip()]
    rng = random.Random(args.seed)
    rng.shuffle(rows)
    if args.quick:
        rows = rows[:600]
    cut = int(0.8 * len(rows))
    faq, held = rows[:cut], rows[cut:]
    spec = _train_spec(args, "bench-bitext-faq")
    spec["data"] = {"path": str(work / "bitext_faq.csv"),
                    "text_column": "instruction", "label_column": "intent", "dedupe": False, "seed": args.seed}
    # Bitext's answers are full of {{Order Number}}-style slots; a bot never sends an unfilled one, so
    # every slot gets a stand-in value ("[Order Number]"), in the FAQ and in the held-out references alike.
    from lmforge.apps.support import SLOT, fill_placeholders

    slots = {m.group(1) for r in rows for m in SLOT.finditer(r["response"] + r["instruction"])}
    values = {slot: f"[{slot}]" for slot in sorted(slots)}
    spec["bot"] = {"faq": {"path": str(work / "bitext_faq.csv"), "question_column": "instruction",
                           "answer_column": "response"}, "oos": {"method": "max-prob"}, "placeholders": values}
    _write_csv(work / "bitext_faq.csv", faq, ["instruction", "response", "intent"])
    labeled = [{"text": r["instruction"], "intent": r["intent"], "answer": fill_placeholders(r["response"], values)}
               for r in held]
    return {"spec": spec, "labeled": labeled}


def _peer(run_dir: Path, labeled: list[dict[str, str]], target_recall: float) -> dict[str, Any]:
    """TF-IDF + LR on the bot run's own splits, max-prob threshold at the same in-scope recall."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from lmforge.apps.support import calibrate
    from lmforge.monitor import roc_auc
    from lmforge.rundir import read_split

    split = {s: read_split(run_dir, s) for s in ("train", "val")}
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vec.fit_transform([r["text"] for r in split["train"]])
    x_val = vec.transform([r["text"] for r in split["val"]])
    y_val = [r["label"] for r in split["val"]]
    best = max((LogisticRegression(C=c, max_iter=3000).fit(x_train, [r["label"] for r in split["train"]])
                for c in PEER_C_GRID), key=lambda clf: float(np.mean(clf.predict(x_val) == np.array(y_val))))
    threshold = calibrate(best.predict_proba(x_val).max(axis=1), target_recall)
    proba = best.predict_proba(vec.transform([r["text"] for r in labeled]))
    pred, score = best.classes_[proba.argmax(axis=1)], proba.max(axis=1)
    gold = np.array([r["intent"] for r in labeled])
    is_oos, flagged = gold == "oos", score < threshold
    return {"in_scope_accuracy": float(np.mean((pred == gold)[~is_oos] & ~flagged[~is_oos])),
            "closed_set_accuracy": float(np.mean((pred == gold)[~is_oos])),
            "oos_recall": float(np.mean(flagged[is_oos])),
            "oos_precision": float(np.mean(is_oos[flagged])) if flagged.any() else None,
            "oos_auroc": roc_auc(is_oos, -score), "threshold": float(threshold), "C": float(best.C)}


def _labeled_file(work: Path, labeled: list[dict[str, str]]) -> Path:
    import json

    path = work / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in labeled), encoding="utf-8")
    return path


def _unseen_oos(bot: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Every method again with the OOS examples of a seeded half of the 27 intents only, scored on the
    in-scope test questions and the *other* half's: out-of-scope topics the bot has no example of.

    The main protocol's OOS file holds training questions of the same 27 intents its test questions
    come from, which a nearest-neighbour score can all but look up; this split measures what is left
    when the out-of-scope questions are about something new.
    """
    import numpy as np

    from lmforge.apps.support import Mahalanobis, Neighbours, calibrate, oos_scores
    from lmforge.monitor import roc_auc
    from lmforge.rundir import read_split

    oos_intents = sorted(set(job["oos_categories"]))
    known = set(random.Random(job["seed"] + 1).sample(oos_intents, len(oos_intents) // 2))
    run = bot.folder / "run"
    train, val = read_split(run, "train"), read_split(run, "val")
    index = {label: i for i, label in enumerate(bot.labels)}
    models = bot.models
    train_pooled = models.embed_raw([r["text"] for r in train])
    bank = [t for t, c in zip(job["oos_texts"], job["oos_categories"], strict=True) if c in known]
    detectors = {"mahalanobis": Mahalanobis().fit(train_pooled, np.array([index[r["label"]] for r in train])),
                 "knn": Neighbours().fit(train_pooled, models.embed_raw(bank))}
    val_scores = oos_scores(*models.encode([r["text"] for r in val], need_embeddings=True), detectors)
    keep = [i for i, c in enumerate(job["test_categories"]) if c in job["in_scope"] or c not in known]
    rows = [job["labeled"][i] for i in keep]
    logits, pooled = models.encode([r["text"] for r in rows], need_embeddings=True)
    scores = oos_scores(logits, pooled, detectors)
    gold = np.array([r["intent"] for r in rows])
    pred = np.array(bot.labels)[logits.argmax(axis=1)]
    is_oos = gold == "oos"
    out: dict[str, Any] = {"known_oos_intents": sorted(known), "n_bank": len(bank), "n_in_scope": int((~is_oos).sum()),
                           "n_unseen_oos": int(is_oos.sum()), "methods": {}}
    for method, score in scores.items():
        flagged = score < calibrate(val_scores[method], job["target"])
        out["methods"][method] = {
            "in_scope_accuracy": round(float(np.mean((pred == gold)[~is_oos] & ~flagged[~is_oos])), 4),
            "oos_recall": round(float(np.mean(flagged[is_oos])), 4),
            "oos_auroc": round(roc_auc(is_oos, -score), 4)}
    return out


def banking_worker(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from lmforge.apps.support import Bot, build_bot, evaluate_bot
    from lmforge.compress import CompressOptions
    from lmforge.config import spec_from_dict

    out = Path(job["bot_dir"])
    start = time.perf_counter()
    manifest = build_bot(spec_from_dict(job["spec"]), out, progress=False,
                         compress_options=CompressOptions() if job["compress"] else None)
    build_s = time.perf_counter() - start
    labeled = _labeled_file(out.parent, job["labeled"])
    methods = {}
    for method in METHODS:
        bot = Bot.load(out, allow_unsigned=True, method=method)
        methods[method] = evaluate_bot(out, labeled, bot=bot)
    bot = Bot.load(out, allow_unsigned=True)
    texts = [r["text"] for r in job["labeled"]][: job["latency_n"]]
    bot.ask(texts[:5])  # warm-up
    times = []
    for text in texts:
        t0 = time.perf_counter()
        bot.ask([text])
        times.append(1000 * (time.perf_counter() - t0))
    unseen = _unseen_oos(Bot.load(out, allow_unsigned=True), job)
    return {"manifest_oos": manifest["oos"], "variant": manifest["classifier_variant"], "unseen_oos_intents": unseen,
            "embedder_variant": manifest["embedder_variant"],
            "closed_set": manifest["test_metrics"], "methods": methods, "auto_choice": manifest["oos"]["method"],
            "peer": _peer(out / "run", job["labeled"], job["target"]), "build_seconds": round(build_s, 1),
            "latency_ms": {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
                           "n": len(times)}}


def bitext_worker(job: dict[str, Any]) -> dict[str, Any]:
    from lmforge.apps.support import Bot, build_bot, evaluate_bot, faq_ranks
    from lmforge.config import spec_from_dict

    out_dir = Path(job["bot_dir"])
    build_bot(spec_from_dict(job["spec"]), out_dir, progress=False)
    bot = Bot.load(out_dir, allow_unsigned=True)
    metrics = evaluate_bot(out_dir, _labeled_file(out_dir.parent, job["labeled"]), bot=bot)
    texts, intents = [r["text"] for r in job["labeled"]], [r["intent"] for r in job["labeled"]]
    retrieval = {}
    for name, weight in (("hybrid", None), ("bm25", 0.0), ("embeddings", 1.0)):
        ranks = [r for r in faq_ranks(bot, texts, intents, weight) if r is not None]
        retrieval[name] = {"hit_at_1": sum(r == 1 for r in ranks) / len(ranks),
                           "mrr": sum(1 / r for r in ranks) / len(ranks), "n": len(ranks)}
    out = {"retrieval": retrieval, "answer_rouge_l": metrics["answer_rouge_l"],
           "in_scope_accuracy": metrics["in_scope_accuracy"], "n_faq": metrics["n_faq"]}
    if job.get("generator_run"):
        out["grounded"] = _grounded(bot, out_dir=out_dir, job=job)
    return out


def _grounded(bot: Any, *, out_dir: Path, job: dict[str, Any]) -> dict[str, Any]:
    """The same bot with ``--generator-run`` rewriting its answers: ROUGE-L against the held-out answer,
    with and without the rewrite, and how many rewrites the grounding check replaced. Only held-out
    questions the generator run did not train on are asked: none in its train or val split."""
    import json

    from lmforge.apps.support import evaluate_bot
    from lmforge.predict import load_generator

    run = Path(job["generator_run"])
    seen = {json.loads(line).get("prompt") for split in ("train", "val")
            for line in (run / "data" / f"{split}.jsonl").open(encoding="utf-8")}
    asked = [r for r in job["labeled"] if r["text"] not in seen][: job["grounded_n"]]
    if not asked:
        return {"n": 0, "note": f"every held-out question is in {run}/data/train.jsonl or val.jsonl"}
    (out_dir.parent / "grounded").mkdir(exist_ok=True)
    path = _labeled_file(out_dir.parent / "grounded", asked)
    plain = evaluate_bot(out_dir, path, bot=bot)
    bot.generator = load_generator(run)
    start = time.perf_counter()
    rewritten = evaluate_bot(out_dir, path, bot=bot)
    seconds = time.perf_counter() - start
    bot.generator = None
    reasons = rewritten["reasons"]
    tried = reasons.get("rewritten", 0) + reasons.get("not_grounded", 0)
    return {"n": len(asked), "generator_run": str(run), "answer_rouge_l_retrieved": plain["answer_rouge_l"],
            "answer_rouge_l_rewritten": rewritten["answer_rouge_l"], "reasons": reasons,
            "replaced_by_grounding_check": reasons.get("not_grounded", 0) / tried if tried else None,
            "seconds": round(seconds, 1)}


def _summarize(banking: dict[str, Any] | None, bitext: dict[str, Any] | None) -> tuple[list, list]:
    targets, summary = [], []
    if banking:
        closed = banking["closed_set"]["accuracy"]
        for method, m in banking["methods"].items():
            summary.append({"metric": f"B77-OOS {method}: in-scope acc / OOS recall / AUROC",
                            "lmforge": f"{m['in_scope_accuracy']} / {m['oos_recall']} / {m['oos_auroc']}",
                            "peer": None, "ratio": None})
        for method, m in banking["unseen_oos_intents"]["methods"].items():
            summary.append({"metric": f"B77-OOS unseen OOS intents, {method}: in-scope acc / OOS recall / AUROC",
                            "lmforge": f"{m['in_scope_accuracy']} / {m['oos_recall']} / {m['oos_auroc']}",
                            "peer": None, "ratio": None})
        peer = banking["peer"]
        summary.append({"metric": "B77-OOS TF-IDF+LR max-prob: in-scope acc / OOS recall / AUROC", "lmforge": None,
                        "peer": f"{peer['in_scope_accuracy']:.4f} / {peer['oos_recall']:.4f} / {peer['oos_auroc']:.4f}",
                        "ratio": None})
        best = banking["methods"][banking["auto_choice"]]
        targets.append(target("B77-OOS in-scope accuracy drop vs closed set (points)",
                              round(100 * (closed - best["in_scope_accuracy"]), 2), "<=", 2.0))
        targets.append(target("B77-OOS OOS recall (auto)", best["oos_recall"], ">=", 0.80))
        targets.append(target("bot ask p99 latency", round(banking["latency_ms"]["p99"], 2), "<=", 50.0, " ms"))
        summary.append({"metric": "bot ask p50 / p99 ms", "lmforge": f"{banking['latency_ms']['p50']:.1f} / "
                        f"{banking['latency_ms']['p99']:.1f}", "peer": None, "ratio": None})
    if bitext:
        r = bitext["retrieval"]
        targets.append(target("Bitext FAQ hit@1 (hybrid)", round(r["hybrid"]["hit_at_1"], 4), ">=", 0.95))
        for name in ("hybrid", "bm25", "embeddings"):
            summary.append({"metric": f"Bitext FAQ {name} hit@1 / MRR", "lmforge":
                            f"{r[name]['hit_at_1']:.4f} / {r[name]['mrr']:.4f}", "peer": None, "ratio": None})
        g = bitext.get("grounded")
        if g and g.get("n"):
            summary.append({"metric": f"Bitext grounded answers ({g['n']} questions): ROUGE-L rewritten / retrieved, "
                            "share of rewrites replaced", "lmforge": f"{g['answer_rouge_l_rewritten']} / "
                            f"{g['answer_rouge_l_retrieved']} / {g['replaced_by_grounding_check']}",
                            "peer": None, "ratio": None})
    return targets, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small subsets, few steps: exercise the code path")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/support_bot[-quick].json)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--target", type=float, default=0.98,
                    help="in-scope recall the thresholds keep (default 0.98: see the module docstring)")
    ap.add_argument("--epochs", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=1.5e-4)
    ap.add_argument("--quick-steps", type=int, default=30)
    ap.add_argument("--latency-n", type=int, default=300)
    ap.add_argument("--compress", action=argparse.BooleanOptionalAction, default=None,
                    help="compress the intent model before calibrating (default: on, off with --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (path is printed)")
    ap.add_argument("--generator-run", type=Path, help="a generative run on Bitext (`lmforge run --set task=generate`, "
                    "or the one `bench/sft_quality.py --keep` leaves) to measure grounded rewritten answers with")
    ap.add_argument("--grounded-n", type=int, default=200, help="held-out questions asked with the generator")
    ap.add_argument("--worker", choices=["banking", "bitext"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = read_job(args.job)
        write_worker_result(job, (banking_worker if args.worker == "banking" else bitext_worker)(job))
        return 0
    if args.compress is None:
        args.compress = not args.quick
    if args.quick:
        args.latency_n = min(args.latency_n, 50)
    out = args.out or default_out(NAME, args.quick)
    work = Path(tempfile.mkdtemp(prefix="lmforge-bench-bot-"))
    notes: list[str] = []
    results: dict[str, Any] = {}
    try:
        if (BANKING / "banking77_train.csv").is_file():
            job = banking_job(args, work)
            log(f"Banking77-OOS: building the bot on {len(job['in_scope'])} intents -> {work / 'b77'}")
            results["banking77_oos"] = run_worker(__file__, "banking", {**job, "bot_dir": str(work / "b77" / "bot")},
                                                  work, tag="banking")
        else:
            notes.append(f"Banking77-OOS skipped: {BANKING} is absent.")
        if BITEXT.is_file():
            job = bitext_job(args, work)
            log(f"Bitext FAQ: building the bot -> {work / 'bitext'}")
            job.update(generator_run=str(args.generator_run) if args.generator_run else None,
                       grounded_n=args.grounded_n)
            results["bitext_faq"] = run_worker(__file__, "bitext", {**job, "bot_dir": str(work / "bitext" / "bot")},
                                               work, tag="bitext")
        else:
            notes.append(f"Bitext FAQ skipped: {BITEXT} is absent.")
    finally:
        leave_workdir(work, args.keep)
    if not results:
        log("nothing ran; no result written")
        return 1
    targets, summary = _summarize(results.get("banking77_oos"), results.get("bitext_faq"))
    notes += [
        "OOS methods: each calibrated to keep --target of in-scope validation questions; 'auto' picks the highest "
        "OOS recall on the calibration file (the 27 held-out intents' training questions), never on test.",
        "unseen_oos_intents: the embedding detectors refitted with the OOS examples of a seeded half of the 27 "
        "intents, each method recalibrated on validation, scored on the in-scope test questions and the other "
        "half's test questions only (out-of-scope topics with no example in bot.oos.path).",
    ]
    notes.append("Grounded answers: the Bitext bot with --generator-run rewriting its answers, on the held-out questions "
                 "its generator did not train on (in neither its train nor its val split; ROUGE-L retrieved vs rewritten, "
                 "and the share of rewrites the grounding check replaced)." if args.generator_run else
                 "Grounded answers are not measured in this run: give --generator-run (a generative run on Bitext).")
    if args.quick:
        notes.append("QUICK MODE: subsets and few steps; the numbers are meaningless, targets are not expected to be met.")
    parameters = {"model": MODEL, "seed": args.seed, "target": args.target, "quick": args.quick,
                  "compress": args.compress, "epochs": args.epochs, "lr": args.lr}
    write_result(out, NAME, quick=args.quick, peer="TF-IDF + logistic regression (max-prob threshold)",
                 parameters=parameters, results=results, ratios={}, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
