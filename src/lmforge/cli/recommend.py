"""`lmforge recommend train | predict | similar`: the text-aware recommender (lmforge.apps.recommend)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmforge.cli._common import add_set_arg, say, sign_after


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="a recommender from interactions and item texts (train, predict, similar)",
                       description="Recommendations that read item texts: popularity, ItemKNN, EASE, TF-IDF, a "
                       "fine-tuned two-tower text model and their blend, measured side by side.")
    verbs = p.add_subparsers(dest="recommend_verb", metavar="ACTION", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    t = verbs.add_parser("train", help="prepare, train every model, evaluate (DIR/eval/rec_metrics.json)",
                         formatter_class=fmt,
                         epilog="example:\n  lmforge recommend train recipes/movielens.yaml --out runs/rec")
    t.add_argument("spec", help="YAML spec with a recommend: section (interactions, items, split...)")
    t.add_argument("--out", required=True, help="recommender directory to write")
    add_set_arg(t)
    t.set_defaults(func=run_train)

    r = verbs.add_parser("predict", help="the top k items of users, never one they have in training",
                         formatter_class=fmt,
                         epilog="examples:\n  lmforge recommend predict runs/rec --users users.txt --k 10 --output recs.jsonl\n"
                         "  lmforge recommend predict runs/rec --all --k 10 --output recs.jsonl\n\n"
                         "An unknown user id is named on stderr (exit 2); the others are still answered.")
    r.add_argument("dir", help="a trained recommender directory")
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", help="a file with one user id per line")
    who.add_argument("--all", action="store_true", help="every user of the training data")
    r.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    r.add_argument("--output", help="JSONL file ({user, items} per line); stdout when unset")
    r.set_defaults(func=run_predict)

    s = verbs.add_parser("similar", help="items whose text is like an item's or a description",
                         formatter_class=fmt,
                         epilog="examples:\n  lmforge recommend similar runs/rec --item 1\n"
                         "  lmforge recommend similar runs/rec --text \"a heist comedy set in space\" --k 5")
    s.add_argument("dir", help="a trained recommender directory (with a text model)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--item", help="an item id as in the input files")
    what.add_argument("--text", help="a description of the items wanted")
    s.add_argument("--k", type=int, default=10, help="items to list (default 10)")
    s.set_defaults(func=run_similar)


def run_train(args: argparse.Namespace) -> int:
    from lmforge.apps.recommend import train_recommender
    from lmforge.config import load_spec

    spec = load_spec(args.spec, args.overrides)
    cfg = spec.recommend
    say(f"recommend: {cfg.interactions.path} + {cfg.items.path or 'no item texts'}, split {cfg.split} -> {args.out}")
    metrics = train_recommender(spec, Path(args.out))
    sign_after(Path(args.out))  # lmforge serve verifies it
    data = metrics["data"]
    if data["users_with_too_few_positives"]:
        say(f"{data['users_with_too_few_positives']} users have fewer than recommend.min_positives = "
            f"{data['min_positives']} positives (e.g. {', '.join(data['too_few_examples'][:3])}): trained on, "
            "not evaluated")
    block = metrics["test"] or metrics["val"]
    say(f"{'test' if metrics['test'] else 'validation'} ({metrics['protocol']}):")
    for name, scores in block.items():
        say(f"  {name:<11} NDCG@10 {scores['NDCG@10']:.4f}  HR@10 {scores['HR@10']:.4f}  "
            f"Recall@20 {scores['Recall@20']:.4f}  (users {scores['users']})")
    comp = metrics["comparison"]
    say(f"blend {'beats' if comp['blend_beats_best_collaborative'] else 'does not beat'} "
        f"{comp['best_collaborative']} on NDCG@10; serving: {metrics['selected']}")
    say(f"metrics: {Path(args.out) / 'eval' / 'rec_metrics.json'}; report: {Path(args.out) / 'eval' / 'report.html'}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from lmforge.apps.recommend import recommend
    from lmforge.errors import DataError

    users = None
    if args.users is not None:
        path = Path(args.users)
        if not path.is_file():
            raise DataError(f"--users file not found: {path}. Give a file with one user id per line.")
        users = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = recommend(args.dir, users, args.k)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        say(f"wrote {len(result.rows)} users' recommendations to {args.output}")
    else:
        sys.stdout.write(text)
    for user in result.unknown:
        print(f"error: unknown user '{user}': not in the training data of {args.dir}; no recommendations for it "
              "(the other users were answered)", file=sys.stderr)
    return 2 if result.unknown else 0


def run_similar(args: argparse.Namespace) -> int:
    from lmforge.apps.recommend import similar

    for row in similar(args.dir, item=args.item, text=args.text, k=args.k):
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0
