"""A search that runs in seconds: minilm-l6 on the easy hand-written two-class task of ``tests/_runs``.

``write_tune_task`` writes the data file into a folder and returns a spec (plain data) whose
every trial trains a few steps with an evaluation every ``eval_steps``. (The random tiny BERT of
``_tiny_bert`` stays at chance for dozens of steps: a pretrained encoder learns this in a few.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests._runs import NEG, POS


def _rows() -> list[dict[str, str]]:
    return [{"text": t + end, "label": label} for label, texts in (("positive", POS), ("negative", NEG))
            for t in texts for end in ("", "!", ".")]


def write_tune_task(root: Path, *, space: dict[str, Any], trials: int = 2, max_steps: int = 8,
                    eval_steps: int = 2, **tune: Any) -> dict[str, Any]:
    """The data file under ``root``; the spec dict of a search over ``space`` (LoRA r=4 on minilm-l6)."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "task.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    return {
        "name": "tiny-tune",
        "data": {"path": str(data), "dedupe": False, "val_fraction": 0.25, "test_fraction": 0.25},
        "model": {"name": "minilm-l6", "max_length": 16},
        "train": {"method": "lora", "lora": {"r": 4, "alpha": 8}, "max_steps": max_steps, "eval_steps": eval_steps,
                  "batch_size": 8, "learning_rate": 2e-3, "warmup_ratio": 0.0, "early_stopping_patience": None, "logging_steps": 1},
        "tune": {"trials": trials, "space": space, **tune},
    }
