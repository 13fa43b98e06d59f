"""The PhraseBank part of ``bench/sentiment_watch.py``: sentiment accuracy on news sentences, against TF-IDF.

Financial PhraseBank v1.0 (``../shared/datasets/financial_phrasebank/phrasebank_all.csv``, read in
place): the all-agree subset (``min_agreement`` 100, 2,264 sentences) and all of it (50-agree, 4,846).
Each is trained by ``lmforge run`` (its own seeded stratified split: ``data.test_fraction`` 0.2, the
data section's dedupe and leakage checks as usual) and scored on its test split; the peer is TF-IDF
word 1-2-grams + class-balanced logistic regression (C picked on the run's validation split), fitted
on the same training split and scored on the same test split. The shared README's numbers for the
peer (0.916 / 0.769 on its own 80/20 split) are given beside ours for reference.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

CONFIGS = {"all-agree": 100, "50-agree": 50}
"""Config -> the ``min_agreement`` it keeps."""
README_PEER = {"all-agree": 0.9161, "50-agree": 0.7691}
C_GRID = (0.3, 1.0, 3.0, 10.0)


def _csv(src: Path, dst: Path, min_agreement: int) -> Path:
    with src.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["min_agreement"]) >= min_agreement]
    with dst.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["sentence"], "label": r["label"]} for r in rows)
    return dst


def _peer(run: Path) -> dict[str, Any]:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from lmforge.rundir import read_split

    split = {s: read_split(run, s) for s in ("train", "val", "test")}
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = {s: (vec.fit_transform if s == "train" else vec.transform)([r["text"] for r in split[s]])
         for s in ("train", "val", "test")}
    y = {s: np.array([r["label"] for r in split[s]]) for s in split}
    models = [LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x["train"], y["train"])
              for c in C_GRID]
    best = max(models, key=lambda m: float(np.mean(m.predict(x["val"]) == y["val"])))
    pred = best.predict(x["test"])
    return {"accuracy": float(np.mean(pred == y["test"])), "macro_f1": float(f1_score(y["test"], pred, average="macro")),
            "C": float(best.C), "n_test": len(pred)}


def phrasebank(source: Path, workdir: Path, *, quick: bool, seed: int, lmforge: Any, log: Any) -> dict[str, Any]:
    """Per config: lmforge's test accuracy and macro-F1, the TF-IDF peer's on the same split, the counts."""
    import json

    out: dict[str, Any] = {}
    for name, agreement in CONFIGS.items():
        data = _csv(source, workdir / f"phrasebank-{name}.csv", agreement)
        run = workdir / f"phrasebank-{name}-run"
        args = ["run", "--out", str(run), "--no-progress", "--set", f"data.path={data}", "--set",
                "data.test_fraction=0.2", "--set", f"data.seed={seed}", "--set", "model.max_length=96",
                "--set", "train.track=[]"]
        if quick:
            args += ["--set", "data.max_examples=400", "--set", "train.max_steps=20"]
        log(f"PhraseBank {name}: lmforge run -> {run}")
        lmforge(*args, timeout=7200)
        metrics = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        peer = _peer(run)
        out[name] = {"lmforge": {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}, "peer": peer,
                     "readme_peer_accuracy": README_PEER[name], "counts": manifest.get("data", {}).get("counts")}
        log(f"PhraseBank {name}: accuracy {metrics['accuracy']:.4f} vs TF-IDF {peer['accuracy']:.4f}")
    return out
