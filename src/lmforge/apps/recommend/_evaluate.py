"""Step 3 of ``lmforge recommend train``: the only reader of ``test.jsonl``; and the whole command.

Every model, the blend included, is measured on the test split with the same full ranking
(training and validation items excluded; on the cold split only the held-out items ranked),
side by side in ``DIR/eval/rec_metrics.json`` and ``DIR/eval/report.html``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.apps.recommend._blend import Blend
from lmforge.apps.recommend._fit import BLEND_PARTS, COLLABORATIVE, Fitted, fit_models
from lmforge.apps.recommend._metrics import METRIC_KS, by_user, evaluate_scores
from lmforge.apps.recommend._prepare import Prepared, prepare_data, read_prepared
from lmforge.apps.recommend._report import render_report
from lmforge.config import Spec
from lmforge.rundir import RunDir, atomic_write_text

__all__ = ["evaluate_models", "train_recommender"]


def _comparison(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The best collaborative model on ``scores`` and whether the blend beats it (NDCG@10)."""
    collab = {n: float(scores[n]["NDCG@10"]) for n in COLLABORATIVE if n in scores}
    best = max(collab, key=lambda n: collab[n])
    blend = float(scores["blend"]["NDCG@10"])
    return {"best_collaborative": best, "best_collaborative_ndcg_at_10": collab[best],
            "blend_ndcg_at_10": blend, "blend_beats_best_collaborative": bool(blend > collab[best])}


def evaluate_models(spec: Spec, prepared: Prepared, fitted: Fitted) -> dict[str, Any]:
    """Measure every fitted model on the test split; write ``rec_metrics.json`` and ``report.html``."""
    rec = prepared.rec
    test: dict[str, dict[str, float]] | None = None
    if spec.recommend.split != "none":
        train_u, train_i = prepared.pairs("train", "val")
        test_u, test_i = prepared.pairs("test")
        cands = prepared.candidates("test")
        train_lists = by_user(train_u, train_i, prepared.n_users)
        test_lists = by_user(test_u, test_i, prepared.n_users)
        models = dict(fitted.models)
        models["blend"] = Blend({n: models[n] for n in BLEND_PARTS if n in models}, fitted.weights, cands)
        test = {n: evaluate_scores(m.score, train_lists, test_lists, candidates=cands) for n, m in models.items()}
    metrics: dict[str, Any] = {
        "protocol": spec.recommend.split, "ks": list(METRIC_KS),
        "ranking": "full (every candidate item; the user's training items excluded)"
        + ("; cold split: only the held-out items are candidates" if spec.recommend.split == "cold" else ""),
        "models": sorted(fitted.val), "test": test, "val": fitted.val,
        "blend": {"weights": fitted.weights, "fitted_on": "val", "grid_points": len(fitted.grid)},
        "selected": fitted.selected, "comparison": _comparison(test) if test else _comparison(fitted.val),
        "comparison_on": "test" if test else "val", "seconds": fitted.seconds, "text_model": fitted.text,
        "data": prepared.report,
    }
    rec.write_json(rec.metrics, metrics)
    atomic_write_text(rec.report, render_report(spec.name, metrics))
    return metrics


def train_recommender(spec: Spec, out: str | Path) -> dict[str, Any]:
    """``lmforge recommend train``: prepare, fit (train/val only), then evaluate (test), then ``manifest.json``
    (every file's sha256; the CLI signs it). Returns the metrics."""
    started = time.perf_counter()
    rec = prepare_data(spec, out)
    prepared = read_prepared(rec.root)
    fitted = fit_models(spec, prepared)
    metrics = evaluate_models(spec, prepared, fitted)
    metrics["seconds"]["total"] = round(time.perf_counter() - started, 3)
    rec.write_json(rec.metrics, metrics)
    # The sha256 of every file, so the directory can be signed and verified like a run (lmforge serve does).
    RunDir(rec.root).update_manifest(kind="recommender", selected=metrics["selected"])
    return metrics
