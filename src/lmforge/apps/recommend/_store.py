"""The recommender directory: the only code that knows its file names.

```
DIR/spec.yaml                        the resolved spec
DIR/data/train.jsonl val.jsonl test.jsonl   {"user", "item"} per positive (train: what the models
                                     fit on; val: the blend's validation; test: read only to evaluate)
DIR/data/index.json                  {"users": [...], "items": [...]}: index -> id as in the files
DIR/data/items.jsonl                 {"item", "text"} per item
DIR/data/val_candidates.json, test_candidates.json   the items ranked (cold split), else null
DIR/data/data_report.json            counts, duplicates, items without text, users with too few positives
DIR/model/                           the fine-tuned encoder (save_pretrained + tokenizer), with a text model
DIR/recommender/recommender.json     {selected, max_k, text_model, history_items, max_length, ...}
DIR/recommender/item_embeddings.safetensors   {"embeddings": (I, H)} unit rows (zero: no text)
DIR/recommender/user_embeddings.safetensors   {"embeddings": (U, H)}
DIR/recommender/top_items.safetensors         {"items": (U, N) int64, "scores": (U, N)}: the selected
                                     model's best N items per user, training items excluded
DIR/recommender/ease.safetensors | itemknn.safetensors   {"active": (A,) int64, "weights": (A, A)}: the
                                     served model's item-item part, for /v1/recommend {history} (A <= 10,000)
DIR/recommender/popularity.safetensors, tfidf.safetensors   the other parts it needs (counts; CSR rows)
DIR/recommender/encoder-int8/        the encoder on ONNX int8 (model.onnx, tokenizer, lmforge_embedder.json)
DIR/eval/rec_metrics.json, report.html
DIR/manifest.json, signature.json    every file's sha256; its signature (lmforge recommend train signs it)
```

Everything loads without pickle: JSON and safetensors (numpy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import RunDirError
from lmforge.rundir import atomic_write_json, atomic_write_text

__all__ = ["RecDir", "read_pairs", "write_pairs"]


class RecDir:
    """Paths of one recommender directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    data = property(lambda self: self.root / "data")
    model = property(lambda self: self.root / "model")
    store = property(lambda self: self.root / "recommender")
    eval = property(lambda self: self.root / "eval")
    spec = property(lambda self: self.root / "spec.yaml")
    meta = property(lambda self: self.store / "recommender.json")
    metrics = property(lambda self: self.eval / "rec_metrics.json")
    report = property(lambda self: self.eval / "report.html")

    def split(self, name: str) -> Path:
        return self.data / f"{name}.jsonl"

    def candidates(self, name: str) -> Path:
        return self.data / f"{name}_candidates.json"

    def tensors(self, name: str) -> Path:
        return self.store / f"{name}.safetensors"

    def require_trained(self) -> dict[str, Any]:
        """``recommender.json``, or a RunDirError saying how to make it."""
        if not self.meta.is_file():
            raise RunDirError(f"{self.root} is not a trained recommender (no {self.meta.relative_to(self.root)}). "
                              f"Run: lmforge recommend train SPEC --out {self.root}")
        return dict(json.loads(self.meta.read_text(encoding="utf-8")))

    def save_tensors(self, name: str, tensors: dict[str, np.ndarray]) -> None:
        numpy_st = require("safetensors.numpy", extra="train", purpose="Saving the recommender")
        self.store.mkdir(parents=True, exist_ok=True)
        tmp = self.tensors(name).with_suffix(".tmp")
        numpy_st.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
        tmp.replace(self.tensors(name))

    def load_tensors(self, name: str) -> dict[str, np.ndarray]:
        numpy_st = require("safetensors.numpy", extra="train", purpose="Loading the recommender")
        path = self.tensors(name)
        if not path.is_file():
            raise RunDirError(f"{path} is missing: train the recommender again (lmforge recommend train).")
        return dict(numpy_st.load_file(str(path)))

    def write_json(self, path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)


def write_pairs(path: Path, users: list[str], items: list[str], user_idx: np.ndarray, item_idx: np.ndarray,
                rows: np.ndarray) -> None:
    """``{"user", "item", "n"}`` lines, ids as in the input files; ``n`` orders a user's positives
    (oldest first) across the split files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"user": users[u], "item": items[i], "n": n}, ensure_ascii=False)
             for u, i, n in zip(user_idx[rows].tolist(), item_idx[rows].tolist(), rows.tolist(), strict=True))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_pairs(path: Path, users: dict[str, int], items: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User index, item index and order arrays of a pairs file written by :func:`write_pairs`."""
    if not path.is_file():
        raise RunDirError(f"{path} is missing: train the recommender again (lmforge recommend train).")
    u, i, n = [], [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                u.append(users[row["user"]])
                i.append(items[row["item"]])
                n.append(row["n"])
    return np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64), np.asarray(n, dtype=np.int64)
