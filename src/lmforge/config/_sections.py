"""The small sections of the spec (augmentation, the fine-tuning methods' settings, evaluation),
kept apart from ``_schema.py`` so each module stays short; ``lmforge.config`` exports them all."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from lmforge._mlflow import uri_problem
from lmforge.errors import ConfigError

__all__ = [
    "TRACKERS",
    "AdaLoraConfig",
    "AdapterConfig",
    "AugmentConfig",
    "EvalConfig",
    "IA3Config",
    "LoraConfig",
    "PrefixConfig",
    "PromptConfig",
    "tracking_problems",
]

TRACKERS = ("mlflow", "tensorboard")
"""The experiment trackers ``train.track`` may name."""


def _check(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


def tracking_problems(track: list[str], mlflow_uri: str | None) -> list[str]:
    """What is wrong with ``train.track`` and ``train.mlflow_uri`` (empty when nothing is)."""
    problems = []
    for name in track:
        if name not in TRACKERS:
            close = difflib.get_close_matches(name, TRACKERS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(f"train.track: unknown tracker {name!r}.{hint} Known: {', '.join(TRACKERS)}.")
    if len(set(track)) != len(track):
        problems.append(f"train.track names a tracker twice: {track}.")
    if mlflow_uri is not None and (problem := uri_problem(mlflow_uri)):
        problems.append(problem)
    return problems


@dataclass
class AugmentConfig:
    """EDA-style augmentation of the training split (Wei & Zou, 2019), seeded, no downloads."""

    enabled: bool = False
    """Turn augmentation on."""
    copies: int = 1
    """Augmented copies made of each training example."""
    alpha: float = 0.1
    """Fraction of words touched by each operation (swap, delete, insert, synonym)."""

    def __post_init__(self) -> None:
        problems = []
        if self.copies < 1:
            problems.append(f"data.augment.copies must be at least 1, got {self.copies}.")
        if not 0.0 < self.alpha <= 0.5:
            problems.append(f"data.augment.alpha must be in (0, 0.5], got {self.alpha}.")
        _check(problems)


@dataclass
class LoraConfig:
    """LoRA hyperparameters (used when `train.method` is `lora`)."""

    r: int = 16
    """Rank of the low-rank update."""
    alpha: int = 32
    """Scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: list[str] | None = None
    """Module names to adapt; the method picks the attention and FFN projections when unset."""

    def __post_init__(self) -> None:
        problems = []
        if self.r < 1:
            problems.append(f"train.lora.r must be at least 1, got {self.r}.")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"train.lora.dropout must be in [0, 1), got {self.dropout}.")
        _check(problems)


@dataclass
class AdapterConfig:
    """Bottleneck adapters (used when `train.method` is `adapter-houlsby` or `adapter-pfeiffer`)."""

    reduction_factor: int = 16
    """Hidden size / bottleneck size: 16 gives a 24-wide bottleneck on a 384-wide MiniLM."""
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = "relu"
    """Activation between the down- and the up-projection."""

    def __post_init__(self) -> None:
        if self.reduction_factor < 1:
            raise ConfigError(f"train.adapter.reduction_factor must be at least 1, got {self.reduction_factor}.")


def _virtual_tokens(section: str, value: int) -> None:
    if not 1 <= value <= 512:
        raise ConfigError(f"train.{section}.num_virtual_tokens must be in [1, 512], got {value}.")


@dataclass
class PrefixConfig:
    """Prefix tuning, P-tuning v2 style (used when `train.method` is `prefix`)."""

    num_virtual_tokens: int = 20
    """Trainable key/value vectors every self-attention layer attends to before the text; they
    count against the model's positions with `model.max_length` (their sum must fit)."""

    def __post_init__(self) -> None:
        _virtual_tokens("prefix", self.num_virtual_tokens)


@dataclass
class PromptConfig:
    """Prompt tuning, a soft prompt (used when `train.method` is `prompt`)."""

    num_virtual_tokens: int = 20
    """Trainable embeddings put before the text's; they take positions, so `model.max_length` plus
    these must fit the model's position embeddings."""

    def __post_init__(self) -> None:
        _virtual_tokens("prompt", self.num_virtual_tokens)


@dataclass
class AdaLoraConfig:
    """AdaLoRA hyperparameters (used when `train.method` is `adalora`; Zhang et al., 2023).

    Each adapted matrix starts with `init_r` SVD-shaped triplets; during training the least
    important ones are pruned until the whole model keeps `target_r` per matrix on average. The
    schedule is given as fractions of the run's optimizer steps (known only when training starts:
    epochs x batches, or `train.max_steps`): `tinit` of them train before any rank is cut, the
    budget then shrinks (cubically) every `delta_t` steps, and the last `tfinal` keep the final
    ranks fixed.
    """

    init_r: int = 12
    """Starting rank of every adapted matrix."""
    target_r: int = 8
    """Average rank per adapted matrix the budget shrinks to (the total is target_r x matrices)."""
    alpha: int = 32
    """Scaling numerator (the update is scaled by alpha / init_r)."""
    dropout: float = 0.05
    """Dropout on the adapter branch."""
    tinit: float = 0.1
    """Fraction of the optimizer steps trained before any rank is cut (peft's `tinit`, in steps)."""
    tfinal: float = 0.2
    """Fraction of the optimizer steps at the end that train with the final ranks fixed (peft's
    `tfinal`; at least one step)."""
    delta_t: int = 10
    """Optimizer steps between two budget allocations (peft's `deltaT`)."""
    beta1: float = 0.85
    """EMA factor of the importance (sensitivity) smoothing."""
    beta2: float = 0.85
    """EMA factor of the importance uncertainty."""
    orth_reg_weight: float = 0.5
    """Weight of the orthogonality penalty on the singular vectors, added to the loss."""
    target_modules: list[str] | None = None
    """Module names to adapt; the same defaults as `train.lora.target_modules` when unset."""

    def __post_init__(self) -> None:
        problems = []
        if self.init_r < 1:
            problems.append(f"train.adalora.init_r must be at least 1, got {self.init_r}.")
        if not 1 <= self.target_r <= max(self.init_r, 1):
            problems.append(f"train.adalora.target_r must be in [1, init_r = {self.init_r}], got {self.target_r}.")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"train.adalora.dropout must be in [0, 1), got {self.dropout}.")
        for key in ("tinit", "tfinal"):
            if not 0.0 <= getattr(self, key) < 1.0:
                problems.append(f"train.adalora.{key} must be a fraction of the steps in [0, 1), got {getattr(self, key)}.")
        if self.tinit + self.tfinal >= 1.0:
            problems.append(
                f"train.adalora.tinit + tfinal must be below 1 (they leave no steps to cut ranks in), "
                f"got {self.tinit} + {self.tfinal}."
            )
        if self.delta_t < 1:
            problems.append(f"train.adalora.delta_t must be at least 1, got {self.delta_t}.")
        for key in ("beta1", "beta2"):
            if not 0.0 < getattr(self, key) < 1.0:
                problems.append(f"train.adalora.{key} must be in (0, 1), got {getattr(self, key)}.")
        if self.orth_reg_weight < 0:
            problems.append(f"train.adalora.orth_reg_weight must be >= 0, got {self.orth_reg_weight}.")
        _check(problems)


@dataclass
class IA3Config:
    """(IA)^3 settings (used when `train.method` is `ia3`; Liu et al., 2022): learned vectors that
    rescale the keys, the values and the FFN's inner activations."""

    target_modules: list[str] | None = None
    """Module names to rescale (peft matching: the full name, or a suffix after a dot). Unset: the
    attention keys and values and each FFN's output projection (BERT's `layer.N.output.dense`,
    Llama's `down_proj`, DistilBERT's `lin2`)."""
    feedforward_modules: list[str] | None = None
    """Those of `target_modules` whose input (not output) is rescaled, as the paper does for the
    FFN. Unset with `target_modules` set: none; both unset: the FFN output projections."""

    def __post_init__(self) -> None:
        problems = []
        if self.target_modules is not None and not self.target_modules:
            problems.append("train.ia3.target_modules must name at least one module (or be null for the defaults).")
        if self.feedforward_modules is not None and self.target_modules is None:
            problems.append(
                "train.ia3.feedforward_modules is set but train.ia3.target_modules is not: name the modules "
                "to rescale too (feedforward_modules must be some of them)."
            )
        elif self.feedforward_modules and self.target_modules:
            extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
            if extra:
                problems.append(
                    f"train.ia3.feedforward_modules must be some of train.ia3.target_modules; not there: {extra}."
                )
        _check(problems)


@dataclass
class EvalConfig:
    """How to evaluate on the test split."""

    batch_size: int = 128
    """Examples per forward pass."""
    calibration_bins: int = 15
    """Equal-width confidence bins of the expected calibration error."""
    max_errors: int = 500
    """Misclassified test examples kept in `errors.jsonl` (most confident first)."""
    max_new_tokens: int = 128
    """`task: generate`: the most tokens generated per test answer (greedy decoding); an answer
    cut here counts against `stop_rate`."""
    max_test: int | None = None
    """`task: generate`: evaluate only the first this many test examples (generation is slow on a
    CPU); None evaluates the whole test split."""
    explain_examples: int = 32
    """Seeded test texts explained (per-word attributions, `lmforge.predict.explain`) for the report's
    "What the model reads" section and `eval/explanations.json`, plus the 3 most confident errors; 0: off."""
    explain_steps: int = 16
    """Integrated-gradients steps per explained text (each a forward and backward pass)."""
    baseline_margin: float = 0.05
    """The model must close at least this share of the gap between a baseline and a perfect score
    (score >= b + margin * (1 - b)) on accuracy and on macro-F1, b being the majority-class
    baseline's; else evaluate warns and `--strict` exits 3."""

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append(f"evaluate.batch_size must be at least 1, got {self.batch_size}.")
        if not 2 <= self.calibration_bins <= 100:
            problems.append(f"evaluate.calibration_bins must be in [2, 100], got {self.calibration_bins}.")
        if self.max_errors < 0:
            problems.append(f"evaluate.max_errors must be >= 0, got {self.max_errors}.")
        if self.explain_examples < 0:
            problems.append(f"evaluate.explain_examples must be >= 0, got {self.explain_examples}.")
        if self.explain_steps < 1:
            problems.append(f"evaluate.explain_steps must be at least 1, got {self.explain_steps}.")
        if self.max_new_tokens < 1:
            problems.append(f"evaluate.max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.max_test is not None and self.max_test < 1:
            problems.append(
                f"evaluate.max_test must be at least 1 (or null for the whole test split), got {self.max_test}."
            )
        if not 0.0 <= self.baseline_margin < 1.0:
            problems.append(f"evaluate.baseline_margin must be in [0, 1), got {self.baseline_margin}.")
        _check(problems)
