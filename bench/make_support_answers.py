"""Make the packaged ``support-answers`` dataset: a seeded subset of the Bitext customer-support set.

    python bench/make_support_answers.py [--source ../shared/datasets/bitext_customer_support]

Takes 22 question/answer pairs of each of the 27 intents (594 pairs), chosen with a fixed seed,
turns the answers' CRLF line breaks into LF, and writes them with the licence (CDLA-Sharing-1.0),
the attribution and a notice that this is a changed copy into
``src/lmforge/catalog/datasets/support_answers/``. The same source and seed give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "datasets" / "bitext_customer_support"
CSV_NAME = "Bitext_Sample_Customer_Support_Training_Dataset.csv"
OUT = REPO / "src" / "lmforge" / "catalog" / "datasets" / "support_answers"
PER_INTENT = 22
SEED = 20231
NOTICE = """\
support-answers: a changed copy (a subset) of the Bitext customer-support training set

Data: "Bitext Sample Customer Support Training Dataset" (c) Bitext Innovations, 2023,
from https://github.com/bitext/customer-support-llm-chatbot-training-dataset
(data/train/{csv}, sha256 {sha}).
Licence: Community Data License Agreement - Sharing - Version 1.0 (CDLA-Sharing-1.0), full text in
LICENSE.txt next to this file. This copy is published under the same agreement.

NOTICE OF CHANGES (CDLA-Sharing-1.0, section 3.1(b)): lmforge changed this data. It keeps
{n} of the {total} rows ({per} per intent, all {intents} intents, chosen with seed {seed} by
bench/make_support_answers.py), only the columns instruction (as "prompt"), response, intent and
category, and turns the CRLF line breaks of the answers into LF. Nothing else was edited.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    args = parser.parse_args()
    path = args.source / CSV_NAME
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_intent: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_intent[row["intent"]].append(row)
    rng = random.Random(SEED)
    picked = []
    for intent in sorted(by_intent):
        picked.extend(rng.sample(by_intent[intent], PER_INTENT))
    rng.shuffle(picked)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "support_answers.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for row in picked:
            record = {"prompt": row["instruction"], "response": row["response"].replace("\r\n", "\n"),
                      "intent": row["intent"], "category": row["category"]}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    shutil.copyfile(args.source / "LICENSE.txt", OUT / "LICENSE.txt")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    (OUT / "NOTICE.txt").write_text(
        NOTICE.format(csv=CSV_NAME, sha=sha, n=len(picked), total=len(rows), per=PER_INTENT,
                      intents=len(by_intent), seed=SEED),
        encoding="utf-8",
    )
    print(f"wrote {len(picked)} pairs of {len(by_intent)} intents to {OUT}")


if __name__ == "__main__":
    main()
