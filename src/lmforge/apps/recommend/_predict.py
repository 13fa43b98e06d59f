"""What a trained recommender answers: recommendations per user, and items like an item or a text.

``recommend`` reads the stored top items of the served model (computed with each user's
training items excluded, so none can come back); an unknown user id is reported, never a
failure of the others. ``similar`` ranks items by the cosine of their text embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.apps.recommend._store import RecDir
from lmforge.errors import ConfigError, DataError, RunDirError
from lmforge.predict import TextEmbedder

__all__ = ["Recommendations", "recommend", "similar"]


@dataclass
class Recommendations:
    """``rows``: one ``{"user", "items"}`` per known user asked for, in order; ``unknown``: the others."""

    rows: list[dict[str, object]]
    unknown: list[str]


def _index(rec: RecDir) -> tuple[list[str], list[str]]:
    index = json.loads((rec.data / "index.json").read_text(encoding="utf-8"))
    return index["users"], index["items"]


def recommend(root: str | Path, users: Sequence[str] | None, k: int = 10) -> Recommendations:
    """The ``k`` best items, best first, for each of ``users`` (ids as in the input files), or every
    user when ``users`` is None. Fewer when fewer items are left outside the user's training items.

    Raises:
        RunDirError: ``root`` is not a trained recommender.
        ConfigError: ``k`` is not in 1..``recommend.max_k``.
    """
    rec = RecDir(root)
    meta = rec.require_trained()
    if not 1 <= k <= meta["max_k"]:
        raise ConfigError(f"--k must be in 1..{meta['max_k']} (recommend.max_k when it was trained), got {k}.")
    user_ids, item_ids = _index(rec)
    top = rec.load_tensors("top_items")
    index = {u: i for i, u in enumerate(user_ids)}
    wanted = list(user_ids) if users is None else list(users)
    rows: list[dict[str, object]] = []
    unknown: list[str] = []
    for user in wanted:
        u = index.get(user)
        if u is None:
            unknown.append(user)
            continue
        ok = np.isfinite(top["scores"][u])
        rows.append({"user": user, "items": [item_ids[i] for i in top["items"][u][ok][:k]]})
    return Recommendations(rows=rows, unknown=unknown)


def similar(root: str | Path, *, item: str | None = None, text: str | None = None,
            k: int = 10) -> list[dict[str, object]]:
    """The ``k`` items whose text embeds nearest ``item``'s text (the item itself left out) or ``text``.

    Raises:
        RunDirError: no trained recommender, or one without a text model.
        DataError: an unknown item, or one with no text.
        ConfigError: neither or both of ``item`` and ``text``; ``k`` below 1.
    """
    if (item is None) == (text is None):
        raise ConfigError("Give exactly one of --item ID or --text \"...\".")
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}.")
    rec = RecDir(root)
    meta = rec.require_trained()
    if not meta["text_model"]:
        raise RunDirError(f"{rec.root} has no text model (recommend.text.enabled was false, or no item texts): "
                          "similar needs one. Train with recommend.items.path set.")
    _, item_ids = _index(rec)
    emb = rec.load_tensors("item_embeddings")["embeddings"]
    exclude: list[int] = []
    if item is not None:
        if item not in item_ids:
            raise DataError(f"Unknown item '{item}': it is in neither the interactions nor the item file of {rec.root}.")
        i = item_ids.index(item)
        if not emb[i].any():
            raise DataError(f"Item '{item}' has no text, so it has no text embedding to compare with.")
        query = emb[i]
        exclude = [i]
    else:
        query = TextEmbedder(rec.model, max_length=meta["max_length"]).encode([str(text)])[0]
    scores = (emb @ query).astype(np.float64)
    scores[~emb.any(axis=1)] = -np.inf  # items without text
    scores[exclude] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"item": item_ids[i], "score": round(float(scores[i]), 6)} for i in order if np.isfinite(scores[i])]
