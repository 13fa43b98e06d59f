"""Tiny trained run directories shared across test packages (trained once per session).

``write_prepared`` writes a hand-made two-class task; ``train_tiny`` fine-tunes minilm-l6 on it
for a few steps (seconds on 2 cores). Session fixtures in ``tests/conftest.py`` expose them as
``trained_full`` and ``trained_lora``; copy a run with :func:`copy_run` before writing into it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmforge.compress import CompressOptions
from lmforge.rundir import RunDir

POS = ["great flight, thank you", "love the crew, amazing service", "best airline ever, thanks",
       "smooth landing and friendly staff", "awesome upgrade, thank you so much", "on time and comfy seats",
       "the pilot was fantastic", "quick boarding, well done"]
NEG = ["lost my bag again, terrible", "delayed three hours, worst airline", "rude agent and no refund",
       "cancelled flight, awful service", "stuck on the tarmac for hours, horrible", "broken seat and cold food",
       "missed my connection, thanks for nothing", "customer service hung up on me"]


def write_prepared(root: Path, train_copies: int = 3) -> RunDir:
    """A prepared run directory with a hand-written, easy two-class task."""
    run = RunDir(root)
    run.data_dir.mkdir(parents=True)
    rows = [{"text": t, "label": "positive"} for t in POS] + [{"text": t, "label": "negative"} for t in NEG]
    for split, part in (("train", rows * train_copies), ("val", rows[::2]), ("test", rows[1::2] + rows[::4])):
        run.split_path(split).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    run.labels_path.write_text(json.dumps({"labels": ["negative", "positive"]}), encoding="utf-8")
    return run


def train_tiny(root: Path, method: str = "full", max_steps: int = 10) -> Path:
    """Prepare and fine-tune a tiny run at ``root`` (``full`` or ``lora``); returns ``root``."""
    from lmforge.config import spec_from_dict
    from lmforge.train import train

    run = write_prepared(root)
    cfg: dict = {"max_steps": max_steps, "batch_size": 8, "learning_rate": 2e-4, "warmup_ratio": 0.0,
                 "method": method}
    if method == "lora":
        cfg.update(learning_rate=2e-3, lora={"r": 4, "alpha": 8})
    train(spec_from_dict({"model": {"max_length": 32}, "train": cfg}), run, progress=False)
    return root


def copy_run(src: Path, dst: Path) -> RunDir:
    """Copy a session run before a test writes into it."""
    shutil.copytree(src, dst)
    return RunDir(dst)


def fast_options(**overrides: object) -> CompressOptions:
    """Compress options that exercise every code path in seconds (not the defaults' quality)."""
    values: dict = {"calibration_size": 16, "recovery_steps": 3, "distill_steps": 3, "batch_size": 8,
                    "latency_repeats": 2, "warmup": 1, "eval_batch_size": 16}
    values.update(overrides)
    return CompressOptions(**values)  # type: ignore[arg-type]


def drop_pooled_output(folder: Path) -> None:
    """Make ``folder``'s graph what an export from before the ``pooled`` output was: logits alone."""
    import onnx

    graph = onnx.load(str(folder / "model.onnx"))
    keep = [o for o in graph.graph.output if o.name == "logits"]
    del graph.graph.output[:]
    graph.graph.output.extend(keep)
    onnx.save(graph, str(folder / "model.onnx"))
