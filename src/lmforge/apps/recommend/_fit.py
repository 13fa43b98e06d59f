"""Step 2 of ``lmforge recommend train``: fit every model, fit the blend on validation, store.

Reads ``DIR/data/train.jsonl`` and ``val.jsonl`` only (never ``test.jsonl``). Every model is
first fitted on ``train`` and measured on ``val``; the blend weights are chosen there. Then
the collaborative models are fitted again on ``train`` + ``val`` (the text model keeps its
encoder and reads the longer histories), which is what is evaluated and served. The model
served by ``lmforge recommend predict`` is the one with the best validation NDCG@10.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmforge.apps.recommend._baselines import EASE, ItemKNN, Popularity, TfidfContent, interaction_matrix
from lmforge.apps.recommend._blend import Blend, Scorer, fit_weights
from lmforge.apps.recommend._metrics import by_user, evaluate_scores, top_k
from lmforge.apps.recommend._online import store_online
from lmforge.apps.recommend._prepare import Prepared
from lmforge.apps.recommend._text import TextTower, VectorScorer
from lmforge.config import Spec

__all__ = ["BLEND_PARTS", "COLLABORATIVE", "Fitted", "fit_models"]

log = logging.getLogger(__name__)

COLLABORATIVE = ("popularity", "itemknn", "ease")
"""The collaborative baselines (they score nothing for an item without interactions)."""
BLEND_PARTS = ("text", "ease", "popularity")
"""What the blend weighs, in its grid's tie-breaking order."""


@dataclass
class Fitted:
    """The models fitted on train + val, the blend weights and what validation said."""

    models: dict[str, Scorer]
    weights: dict[str, float]
    val: dict[str, dict[str, float]]
    selected: str
    seconds: dict[str, float]
    text: dict[str, Any] | None
    grid: list[dict[str, Any]] = field(default_factory=list)


def _collaborative(x: np.ndarray, spec: Spec, texts: list[str], seconds: dict[str, float]) -> dict[str, Scorer]:
    models: dict[str, Any] = {"popularity": Popularity(), "itemknn": ItemKNN(),
                              "ease": EASE(spec.recommend.ease_lambda)}
    if any(texts):
        models["tfidf"] = TfidfContent(texts)
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(x)
        seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - started, 3)
    return models


def fit_models(spec: Spec, prepared: Prepared) -> Fitted:
    """Fit, validate, blend and refit (see the module docstring); store what predict and similar read."""
    cfg = spec.recommend
    fit_u, fit_i = prepared.pairs("train")
    val_u, val_i = prepared.pairs("val")
    cands = prepared.candidates("val")
    fit_lists = by_user(fit_u, fit_i, prepared.n_users)
    val_lists = by_user(val_u, val_i, prepared.n_users)
    seconds: dict[str, float] = {}
    models = _collaborative(interaction_matrix(fit_u, fit_i, prepared.n_users, prepared.n_items), spec,
                            prepared.texts, seconds)
    tower: TextTower | None = None
    text_summary = None
    if cfg.text.enabled and any(prepared.texts):
        started = time.perf_counter()
        tower = TextTower(spec, prepared.texts, prepared.rec.model).fit(fit_lists, np.random.default_rng(cfg.seed))
        models["text"] = VectorScorer(tower.user_vectors(fit_lists), tower.item_embeddings_)
        seconds["text"] = round(time.perf_counter() - started, 3)
        text_summary = tower.summary_
    val = {name: evaluate_scores(m.score, fit_lists, val_lists, candidates=cands) for name, m in models.items()}
    parts = {n: models[n] for n in BLEND_PARTS if n in models}
    started = time.perf_counter()
    weights, grid = fit_weights(parts, fit_lists, val_lists, candidates=cands)
    val["blend"] = evaluate_scores(Blend(parts, weights, cands).score, fit_lists, val_lists, candidates=cands)
    seconds["blend"] = round(time.perf_counter() - started, 3)
    selected = max(val, key=lambda n: (val[n]["NDCG@10"], n == "blend"))
    log.info("validation NDCG@10: %s; blend weights %s", {n: round(v["NDCG@10"], 4) for n, v in val.items()}, weights)
    del models, parts
    # Refit on everything the models may see: train + val.
    train_u, train_i = prepared.pairs("train", "val")
    train_lists = by_user(train_u, train_i, prepared.n_users)
    final = _collaborative(interaction_matrix(train_u, train_i, prepared.n_users, prepared.n_items), spec,
                           prepared.texts, seconds)
    if tower is not None:
        user_vectors = tower.user_vectors(train_lists)
        final["text"] = VectorScorer(user_vectors, tower.item_embeddings_)
        prepared.rec.save_tensors("item_embeddings", {"embeddings": tower.item_embeddings_})
        prepared.rec.save_tensors("user_embeddings", {"embeddings": user_vectors})
    final["blend"] = Blend({n: final[n] for n in BLEND_PARTS if n in final}, weights)
    fitted = Fitted(models=final, weights=weights, val=val, selected=selected, seconds=seconds, text=text_summary,
                    grid=grid)
    _store(spec, prepared, fitted, train_lists)
    return fitted


def _store(spec: Spec, prepared: Prepared, fitted: Fitted, train_lists: list[np.ndarray]) -> None:
    """The selected model's best ``max_k`` items per user (training items excluded), what ``/v1/recommend``
    needs for new histories and texts (``_online.store_online``), and the metadata."""
    n = min(spec.recommend.max_k, prepared.n_items)
    model = fitted.models[fitted.selected]
    items = np.zeros((prepared.n_users, n), dtype=np.int64)
    scores = np.zeros((prepared.n_users, n), dtype=np.float32)
    for start in range(0, prepared.n_users, 256):
        users = np.arange(start, min(start + 256, prepared.n_users))
        s = np.array(model.score(users), dtype=np.float64)
        top = top_k(s, [train_lists[u] for u in users], n)
        items[users] = top
        scores[users] = np.take_along_axis(s, top, axis=1)  # -inf: fewer than n items left to recommend
    prepared.rec.save_tensors("top_items", {"items": items, "scores": scores})
    online = store_online(prepared.rec, fitted.selected, fitted.weights, fitted.models, prepared.texts,
                          spec.model.max_length)
    prepared.rec.write_json(prepared.rec.meta, {
        "selected": fitted.selected, "max_k": spec.recommend.max_k, "stored_k": n, "blend_weights": fitted.weights,
        "text_model": "text" in fitted.models, "model_name": spec.model.name,
        "history_items": spec.recommend.text.history_items, "history_windows": spec.recommend.text.history_windows,
        "max_length": spec.model.max_length, "online": online,
        "val_ndcg_at_10": {k: v["NDCG@10"] for k, v in fitted.val.items()},
    })
