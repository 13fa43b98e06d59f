"""Interactions and item texts, read as the files write them, indexed for the models.

Ids are read as text, never parsed, so recommendations name items exactly as the input files
do (``007`` stays ``007``). Positives are interactions rated at least ``recommend.min_rating``
(every one when unset); a repeated (user, item) keeps its first occurrence. A user's positives
are ordered oldest first (by ``time_column`` when the file has it, else by file order), which
``loo`` holds out from and the text model reads histories in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.config import RecommendConfig
from lmforge.data import read_frame
from lmforge.errors import ConfigError, DataError

__all__ = ["Interactions", "load_interactions"]

log = logging.getLogger(__name__)


def _need(frame: Any, columns: dict[str, str], path: str) -> None:
    missing = [f"{key} = '{name}'" for key, name in columns.items() if name not in frame.columns]
    if missing:
        raise DataError(f"{path} has no column {', '.join(missing)}. Found columns: {', '.join(map(str, frame.columns))}. "
                        "Set the recommend.* column keys to the file's names.")


def _times(pd: Any, column: Any, path: str, name: str) -> Any:
    """The time column as float64: numbers as they are, else dates as nanoseconds since 1970."""
    numbers = pd.to_numeric(column, errors="coerce")
    if not numbers.isna().any():
        return numbers.astype("float64")
    dates = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    if dates.isna().any():
        bad = column[numbers.isna() & dates.isna()]
        raise DataError(f"{path}: {len(bad)} values of column '{name}' are neither numbers nor dates "
                        f"(first: {bad.iloc[0]!r}).")
    return (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds().astype("float64")


@dataclass
class Interactions:
    """Positives as index arrays over ``user_ids`` and ``item_ids``, ordered by user then time."""

    user_ids: list[str]
    """User index -> id as in the file."""
    item_ids: list[str]
    """Item index -> id; every interacted item, then the items known only from the item file."""
    users: np.ndarray
    """User index of each positive (int64), grouped by user, oldest first within a user."""
    items: np.ndarray
    """Item index of each positive."""
    texts: list[str]
    """Item index -> its text ('' for an item without one)."""
    report: dict[str, Any] = field(default_factory=dict)
    """What loading found: counts, duplicates dropped, items without text, users with too few positives."""

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _item_texts(cfg: RecommendConfig) -> dict[str, str]:
    items = cfg.items
    if items.path is None:
        return {}
    frame = read_frame(items.path, "recommend.items.path")
    id_col = items.id_column or cfg.interactions.item_column
    columns = items.text_columns or [c for c in frame.columns if c != id_col]
    _need(frame, {"recommend.items.id_column": id_col,
                  **{f"recommend.items.text_columns[{i}]": c for i, c in enumerate(columns)}}, items.path)
    parts = frame[columns].apply(lambda col: col.str.strip())
    texts = parts.apply(lambda row: ". ".join(v for v in row if v), axis=1) if len(frame) else []
    return {str(i): str(t) for i, t in zip(frame[id_col], texts, strict=True)}


def load_interactions(cfg: RecommendConfig) -> Interactions:
    """Read, filter, dedupe and index the interactions and item texts of ``cfg``.

    Raises:
        ConfigError: no interactions file set.
        DataError: missing file or columns (naming the ones found), a rating that is not a number,
            no positives left, or (``require_text``) interacted items with no text.
    """
    inter = cfg.interactions
    if inter.path is None:
        raise ConfigError("recommend.interactions.path is not set: point it at the interactions file.")
    pd = require("pandas", extra="data", purpose="Reading interactions")
    frame = read_frame(inter.path, "recommend.interactions.path")
    columns = {"recommend.interactions.user_column": inter.user_column,
               "recommend.interactions.item_column": inter.item_column}
    if cfg.min_rating is not None:
        columns["recommend.interactions.rating_column"] = inter.rating_column
    if cfg.split == "loo":
        columns["recommend.interactions.time_column"] = inter.time_column
    _need(frame, columns, inter.path)
    rows = len(frame)
    frame = frame[(frame[inter.user_column] != "") & (frame[inter.item_column] != "")]
    report: dict[str, Any] = {"rows": rows, "rows_without_ids": rows - len(frame)}
    if cfg.min_rating is not None:
        rating = pd.to_numeric(frame[inter.rating_column], errors="coerce")
        if rating.isna().any():
            raise DataError(f"{inter.path}: {int(rating.isna().sum())} values of column '{inter.rating_column}' are "
                            f"not numbers (first: {frame[inter.rating_column][rating.isna()].iloc[0]!r}).")
        frame = frame[rating >= cfg.min_rating]
        report["below_min_rating"] = rows - report["rows_without_ids"] - len(frame)
    frame = frame.reset_index(drop=True)
    frame["_order"] = np.arange(len(frame))
    if inter.time_column in frame.columns:
        frame["_time"] = _times(pd, frame[inter.time_column], inter.path, inter.time_column)
        frame = frame.sort_values(["_time", "_order"], kind="stable")
    before = len(frame)
    frame = frame.drop_duplicates([inter.user_column, inter.item_column], keep="first")
    report["duplicates_dropped"] = before - len(frame)
    if frame.empty:
        raise DataError(f"{inter.path}: no positive interactions left"
                        + (f" at recommend.min_rating = {cfg.min_rating}." if cfg.min_rating is not None else "."))
    texts = _item_texts(cfg)
    user_ids = list(dict.fromkeys(frame[inter.user_column]))
    seen = list(dict.fromkeys(frame[inter.item_column]))
    seen_set = set(seen)
    item_ids = seen + [i for i in texts if i not in seen_set]
    uidx = {u: i for i, u in enumerate(user_ids)}
    iidx = {it: i for i, it in enumerate(item_ids)}
    users = frame[inter.user_column].map(uidx).to_numpy(np.int64)
    items = frame[inter.item_column].map(iidx).to_numpy(np.int64)
    order = np.lexsort((np.arange(len(users)), users))  # by user, keeping time order within each
    users, items = users[order], items[order]
    no_text = [i for i in seen if not texts.get(i)] if cfg.items.path is not None else []
    report.update(positives=len(users), users=len(user_ids), items=len(item_ids), interacted_items=len(seen),
                  items_without_text=len(no_text), items_without_text_examples=no_text[:5])
    if no_text and cfg.items.path is not None:
        message = (f"{len(no_text)} of the {len(seen)} interacted items have no text in {cfg.items.path} "
                   f"(e.g. {', '.join(no_text[:3])})")
        if cfg.require_text:
            raise DataError(f"{message}. Add their text, or set recommend.require_text: false to score them "
                            "with the collaborative models only.")
        log.warning("%s: they get collaborative scores only.", message)
    counts = np.bincount(users, minlength=len(user_ids))
    few = [user_ids[u] for u in np.flatnonzero(counts < cfg.min_positives)]
    report.update(users_with_too_few_positives=len(few), too_few_examples=few[:10], min_positives=cfg.min_positives)
    if few:
        log.warning("%d users have fewer than recommend.min_positives = %d positives (e.g. %s): they train the "
                    "models but are not held out or evaluated.", len(few), cfg.min_positives, ", ".join(few[:3]))
    return Interactions(user_ids=user_ids, item_ids=item_ids, users=users, items=items,
                        texts=[texts.get(i, "") for i in item_ids], report=report)
