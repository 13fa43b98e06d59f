"""The ``tune:`` section (``lmforge tune``): budget, objective, pruner and the search space.

``space`` maps dotted spec keys to a list of choices or a range ``{low, high, log, step}``.
This module checks the shape of each entry and finds the annotation of each key in the
schema (:func:`space_keys`); ``_load.py`` checks every value against that annotation and
against the spec's own rules, since only it can build a spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from lmforge.errors import ConfigError

__all__ = ["RANGE_KEYS", "UNSEARCHABLE", "TuneConfig", "space_keys"]

RANGE_KEYS = ("low", "high", "log", "step")
"""The keys of a range in ``tune.space``."""

UNSEARCHABLE = {
    "data": "every trial trains on the one split `lmforge tune` prepares first",
    "tune": "the search cannot search its own settings",
    "task": "`lmforge tune` searches classifiers (objective accuracy or macro_f1)",
    "recommend": "`lmforge tune` searches classifiers; `lmforge recommend train` reads this section",
    "watch": "the watch section is read by `lmforge watch`, not by training",
    "retrain": "the retrain section is read by `lmforge retrain`, not by training",
}
"""Top-level spec keys ``tune.space`` refuses, and why."""


@dataclass
class TuneConfig:
    """Hyper-parameter search with Optuna (`lmforge tune SPEC --out DIR`)."""

    trials: int = 20
    """Trials that finish (complete or pruned) before the search stops; `--trials` overrides it."""
    timeout: float | None = None
    """Seconds after which no new trial starts (a running one finishes); `--timeout` overrides it."""
    objective: Literal["accuracy", "macro_f1"] = "macro_f1"
    """The validation score each trial is judged by (at its best checkpoint)."""
    second_objective: Literal["latency_ms", "trainable_params"] | None = None
    """A second objective, minimized: the study becomes multi-objective and reports a Pareto front."""
    pruner: Literal["median", "hyperband", "none"] | None = None
    """Stop hopeless trials from their intermediate validation scores. Unset: `median`, or `none`
    with a `second_objective` (Optuna cannot prune a multi-objective study)."""
    space: dict[str, Any] = field(default_factory=dict)
    """Dotted spec key -> a list of choices, or a range `{low, high, log, step}` (numbers only)."""

    def __post_init__(self) -> None:
        problems = []
        if self.trials < 1:
            problems.append(f"tune.trials must be at least 1, got {self.trials}.")
        if self.timeout is not None and self.timeout <= 0:
            problems.append(f"tune.timeout must be a positive number of seconds (or null), got {self.timeout}.")
        if self.second_objective is not None and self.pruner not in (None, "none"):
            problems.append(
                f"tune.pruner is '{self.pruner}' but tune.second_objective is set: Optuna cannot prune a "
                "multi-objective study. Set tune.pruner: none (or leave it unset)."
            )
        for key, value in self.space.items():
            problems.extend(_shape_problems(str(key), value))
        if problems:
            raise ConfigError(problems)

    @property
    def resolved_pruner(self) -> str:
        """The pruner in effect: ``median``, ``hyperband`` or ``none``."""
        if self.pruner is not None:
            return self.pruner
        return "none" if self.second_objective else "median"


def _shape_problems(key: str, value: Any) -> list[str]:
    """What is wrong with the form of one ``tune.space`` entry (its values are checked in ``_load``)."""
    where = f"tune.space.{key}"
    if isinstance(value, list):
        if not value:
            return [f"{where} is an empty list: give at least one choice."]
        bad = [v for v in value if not (v is None or isinstance(v, bool | int | float | str))]
        return [f"{where}: a choice must be a number, a string, true/false or null, got {bad[0]!r}."] if bad else []
    if not isinstance(value, dict):
        return [f"{where} must be a list of choices or a range {{low, high, log, step}}, got {value!r}."]
    problems = [f"{where}: unknown range key '{k}'; a range has {', '.join(RANGE_KEYS)}."
                for k in value if k not in RANGE_KEYS]
    for bound in ("low", "high"):
        v = value.get(bound)
        if isinstance(v, bool) or not isinstance(v, int | float):
            problems.append(f"{where}.{bound} must be a number, got {v!r}.")
    if problems:
        return problems
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    if not low < high:
        problems.append(f"{where}: low ({low}) must be below high ({high}).")
    if not isinstance(log, bool):
        problems.append(f"{where}.log must be true or false, got {log!r}.")
    elif log and low <= 0:
        problems.append(f"{where}: a log range needs low > 0, got {low}.")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            problems.append(f"{where}.step must be a positive number, got {step!r}.")
        elif log:
            problems.append(f"{where}: a range is either log or stepped, not both (Optuna samples one or the other).")
    return problems


def space_keys(root: type) -> dict[str, Any]:
    """Every dotted leaf key of the spec schema ``root`` with its annotation (sections recursed into)."""
    out: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            tp = hints[f.name]
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                walk(tp, f"{key}.")
            else:
                out[key] = tp

    walk(root, "")
    return out
