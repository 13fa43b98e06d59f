"""Step 1 of ``lmforge recommend train``: read, split and write the data of a recommender directory.

After this step the splits live only in files: fitting reads ``train``/``val`` and evaluation
alone reads ``test`` (and ``test_candidates``), so no model or weight can see the test split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.apps.recommend._data import load_interactions
from lmforge.apps.recommend._split import make_splits
from lmforge.apps.recommend._store import RecDir, read_pairs, write_pairs
from lmforge.config import Spec, spec_to_yaml
from lmforge.errors import DataError
from lmforge.rundir import atomic_write_text

__all__ = ["Prepared", "prepare_data", "read_prepared"]

log = logging.getLogger(__name__)


def prepare_data(spec: Spec, out: str | Path) -> RecDir:
    """Load ``spec.recommend``'s files, split them by its protocol and write ``DIR/data``.

    Raises:
        ConfigError, DataError: see :func:`load_interactions`; a split with nothing to train or test.
    """
    cfg = spec.recommend
    data = load_interactions(cfg)
    splits = make_splits(data, cfg)
    if len(splits.fit) == 0:
        raise DataError("No training positives are left after the split; give more interactions.")
    if cfg.split != "none" and len(splits.test) == 0:
        raise DataError(f"recommend.split = {cfg.split} held nothing out (every user has fewer than "
                        f"recommend.min_positives = {cfg.min_positives} positives, or one each); "
                        "lower recommend.min_positives or use split: none.")
    rec = RecDir(out)
    rec.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rec.spec, spec_to_yaml(spec))
    rec.write_json(rec.data / "index.json", {"users": data.user_ids, "items": data.item_ids})
    atomic_write_text(rec.data / "items.jsonl", "".join(
        json.dumps({"item": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(data.item_ids, data.texts,
                                                                                      strict=True)))
    for name, rows in (("train", splits.fit), ("val", splits.val), ("test", splits.test)):
        write_pairs(rec.split(name), data.user_ids, data.item_ids, data.users, data.items, rows)
    for name, cands in (("val", splits.val_candidates), ("test", splits.test_candidates)):
        rec.write_json(rec.candidates(name), None if cands is None else [data.item_ids[i] for i in cands])
    report = {**data.report, "protocol": cfg.split, "split": splits.report}
    rec.write_json(rec.data / "data_report.json", report)
    log.info("recommend data: %s", splits.report)
    return rec


class Prepared:
    """The index and the item texts of a prepared directory, and readers of its split files."""

    def __init__(self, rec: RecDir) -> None:
        index = json.loads((rec.data / "index.json").read_text(encoding="utf-8"))
        self.rec = rec
        self.user_ids: list[str] = index["users"]
        self.item_ids: list[str] = index["items"]
        self.users = {u: i for i, u in enumerate(self.user_ids)}
        self.items = {it: i for i, it in enumerate(self.item_ids)}
        with (rec.data / "items.jsonl").open(encoding="utf-8") as fh:
            self.texts = [json.loads(line)["text"] for line in fh if line.strip()]
        self.report: dict[str, Any] = json.loads((rec.data / "data_report.json").read_text(encoding="utf-8"))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def pairs(self, *names: str) -> tuple[np.ndarray, np.ndarray]:
        """User and item indices of the named split files together, in original order (oldest first)."""
        parts = [read_pairs(self.rec.split(n), self.users, self.items) for n in names]
        u, i, n = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.argsort(n, kind="stable")
        return u[order], i[order]

    def candidates(self, name: str) -> np.ndarray | None:
        """The item indices ranked for split ``name``, or None (every item)."""
        ids = json.loads(self.rec.candidates(name).read_text(encoding="utf-8"))
        return None if ids is None else np.asarray([self.items[i] for i in ids], dtype=np.int64)


def read_prepared(out: str | Path) -> Prepared:
    """The prepared data of a recommender directory."""
    return Prepared(RecDir(out))

