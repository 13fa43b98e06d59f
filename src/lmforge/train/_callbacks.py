"""Training callbacks: a progress bar with ETA and live loss/metric, and a JSONL training log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

__all__ = ["JsonlLogCallback", "ProgressBarCallback"]


class ProgressBarCallback(TrainerCallback):
    """One bar over all optimizer steps, showing ETA, the latest loss and validation macro-F1
    (or loss), and training tokens per second where the Trainer counts tokens."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.postfix: dict[str, str] = {}
        self.started = 0.0
        self.tokens_at_start = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            dynamic_ncols=True)
        self.started = time.perf_counter()
        self.tokens_at_start = int(getattr(state, "num_input_tokens_seen", 0) or 0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0) - self.tokens_at_start
            elapsed = time.perf_counter() - self.started
            if tokens > 0 and elapsed > 0:
                self.postfix["tok/s"] = f"{tokens / elapsed:.0f}"
                self.bar.set_postfix(self.postfix, refresh=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.postfix["loss"] = f"{logs['loss']:.4f}"
        if "eval_macro_f1" in logs:
            self.postfix["val_f1"] = f"{logs['eval_macro_f1']:.4f}"
        elif "eval_loss" in logs:
            self.postfix["val_loss"] = f"{logs['eval_loss']:.4f}"
        if "learning_rate" in logs:
            self.postfix["lr"] = f"{logs['learning_rate']:.2e}"
        self.bar.set_postfix(self.postfix, refresh=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonlLogCallback(TrainerCallback):
    """Appends every log record (step, epoch, loss, lr, eval metrics) to ``logs/train.log``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
