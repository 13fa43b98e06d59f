"""The Trainer callback that ties one training run to its Optuna trial (imports transformers at its top)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["TrialCallback"]


class TrialCallback(TrainerCallback):
    """Keeps every validation score of the run and, with ``prune``, reports it to ``trial``
    (step = the optimizer step) and stops training as soon as the pruner says the trial is hopeless.

    Training stops through ``control.should_training_stop`` rather than an exception, so the
    train stage still closes its logs and writes ``model/`` (the best checkpoint so far): a
    pruned trial is a complete, if weak, run directory.
    """

    def __init__(self, trial: Any, objective: str, *, prune: bool) -> None:
        self.trial = trial
        self.objective = objective
        self.prune = prune
        self.scores: dict[int, dict[str, float]] = {}
        self.pruned_at: int | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        key = f"eval_{self.objective}"
        if not metrics or key not in metrics:
            return
        step = int(state.global_step)
        self.scores[step] = {name: float(metrics[f"eval_{name}"]) for name in ("accuracy", "macro_f1")
                             if f"eval_{name}" in metrics}
        if not self.prune:
            return
        self.trial.report(float(metrics[key]), step)
        if self.trial.should_prune():
            self.pruned_at = step
            control.should_training_stop = True
