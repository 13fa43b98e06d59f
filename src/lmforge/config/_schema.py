"""The spec: typed dataclasses holding plain data, one per section of ``spec.yaml``.

Every section and every field is optional; the defaults run the embedded default job
(airline-tweets + minilm-l6). Each field is documented where it is declared. Cross-field
checks live in ``__post_init__`` and report in the user's words, with the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lmforge.config._bot import BotConfig
from lmforge.config._recommend import RecommendConfig
from lmforge.config._retrain import RetrainConfig
from lmforge.config._sections import (
    AdaLoraConfig,
    AdapterConfig,
    AugmentConfig,
    EvalConfig,
    IA3Config,
    LoraConfig,
    PrefixConfig,
    PromptConfig,
    tracking_problems,
)
from lmforge.config._tune import TuneConfig
from lmforge.config._watch import WatchConfig
from lmforge.errors import ConfigError

__all__ = [
    "AdaLoraConfig",
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "IA3Config",
    "LoraConfig",
    "ModelConfig",
    "Spec",
    "TrainConfig",
    "TuneConfig",
    "WatchConfig",
]

FORMATS = ("csv", "jsonl", "parquet")


def _check(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


@dataclass
class DataConfig:
    """Where the labeled text comes from and how it is cleaned and split."""

    dataset: str | None = None
    """A packaged dataset by catalog name (see `lmforge datasets`). Used when `path` is unset."""
    path: str | None = None
    """A CSV, JSONL or Parquet file with a text and a label column. Overrides `dataset`."""
    format: Literal["csv", "jsonl", "parquet"] | None = None
    """File format; taken from the file extension when unset."""
    text_column: str = "text"
    """Column holding the text."""
    label_column: str = "label"
    """Column holding the label."""
    prompt_column: str = "prompt"
    """`task: generate`: column holding the prompt (the user's question)."""
    response_column: str = "response"
    """`task: generate`: column holding the answer the model learns to write."""
    messages_column: str = "messages"
    """`task: generate`: column holding chat turns (a list of `{role, content}`; the last turn is
    the assistant's answer), used instead of the prompt/response columns when present."""
    system: str | None = None
    """`task: generate`: a system prompt put before every conversation (training and inference)."""
    truncate: Literal["error", "left"] = "error"
    """`task: generate`: a prompt longer than `model.max_length` is an error, or (`left`) loses its
    oldest tokens, with a warning."""
    test_path: str | None = None
    """A separate test file (same columns). When set, the test split is not carved out of `path`."""
    encoding: str | None = None
    """Text encoding of `path` (e.g. utf-8, latin-1, gbk). Detected (UTF-8/UTF-16 with BOM) when unset."""
    max_examples: int | None = None
    """Keep at most this many examples (a seeded stratified sample), for quick runs."""
    max_chars: int = 10_000
    """Longer texts are truncated to this many characters, with a warning."""
    val_fraction: float = 0.1
    """Fraction of examples held out for validation (early stopping, model selection)."""
    test_fraction: float = 0.1
    """Fraction held out for the final test (ignored when `test_path` is set)."""
    seed: int = 42
    """Seed of sampling, splitting and augmentation."""
    dedupe: bool = True
    """Remove exact and near duplicates (MinHash over character shingles)."""
    near_duplicate_threshold: float = 0.9
    """Estimated Jaccard similarity at or above which two texts are near duplicates (1.0 = exact only)."""
    min_per_class: int = 3
    """Labels with fewer examples than this cannot be stratified and are an error."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Augmentation of the training split."""
    pii: Literal["keep", "redact"] = "keep"
    """`redact` replaces PII (e-mails, phones, Chinese IDs, bank cards, IPs, URLs, passports) in
    every text before deduplication (lmforge.guard.pii)."""
    pii_mode: Literal["mask", "hash", "drop"] = "mask"
    """How PII is replaced: `[PHONE]`-style tags, a keyed hash (needs $LMFORGE_PII_SALT), or nothing."""
    max_unknown_rate: float = 0.05
    """Readability check: above this share of training-split tokens that the model's tokenizer maps
    to its unknown token, prepare and train warn and say how to fix it."""
    max_unknown_rate_stop: float = 0.30
    """Above this share the model cannot read the data: with `model.extend_vocab: false` prepare
    and train stop (exit 2); with `auto` train extends the vocabulary instead. 1.0 never stops."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_examples is not None and self.max_examples < 2:
            problems.append(f"data.max_examples must be at least 2, got {self.max_examples}.")
        if self.max_chars < 1:
            problems.append(f"data.max_chars must be positive, got {self.max_chars}.")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                problems.append(f"data.{key} must be in [0, 1), got {value}.")
        if self.val_fraction + self.test_fraction >= 0.9:
            problems.append(
                f"data.val_fraction + data.test_fraction is {self.val_fraction + self.test_fraction:.2f}; "
                "leave at least 10% of the data for training."
            )
        if not 0.5 <= self.near_duplicate_threshold <= 1.0:
            problems.append(
                f"data.near_duplicate_threshold must be in [0.5, 1.0], got {self.near_duplicate_threshold}."
            )
        if self.min_per_class < 2:
            problems.append(f"data.min_per_class must be at least 2, got {self.min_per_class}.")
        for key in ("max_unknown_rate", "max_unknown_rate_stop"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                problems.append(f"data.{key} must be in [0, 1], got {getattr(self, key)}.")
        if self.max_unknown_rate > self.max_unknown_rate_stop:
            problems.append(
                f"data.max_unknown_rate ({self.max_unknown_rate}) must not exceed data.max_unknown_rate_stop "
                f"({self.max_unknown_rate_stop}): the warning comes before the stop."
            )
        _check(problems)


@dataclass
class ModelConfig:
    """Which pretrained model to fine-tune."""

    name: str = ""
    """A packaged model by catalog name (see `lmforge models`) or a local Hugging Face folder.
    Unset: `minilm-l6` (an encoder, to classify), or `smollm2-135m` (a causal LM) for `task: generate`."""
    max_length: int = 0
    """Texts are truncated to this many tokens; batches are padded only to their longest text.
    Unset (0): 128 to classify (short texts, a small encoder); 512 for `task: generate`, where the
    limit covers prompt + answer (Bitext's answers average 143 SmolLM2 tokens, the longest 477, after
    a ~45-token prompt)."""
    extend_vocab: Literal["auto"] | bool = "auto"
    """Add the characters of the training split that the tokenizer maps to its unknown token as new
    tokens (embeddings start near the mean embedding, seeded, and train even with
    `train.freeze_embeddings`). `auto`: only when the unknown
    share exceeds `data.max_unknown_rate_stop` (with a notice); `true`: always; `false`: never."""
    extend_vocab_max_tokens: int = 5000
    """At most this many new tokens (the most frequent unknown characters, seen at least twice)."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_length != 0 and not 8 <= self.max_length <= 8192:
            problems.append(f"model.max_length must be in [8, 8192], got {self.max_length}.")
        if self.extend_vocab_max_tokens < 1:
            problems.append(f"model.extend_vocab_max_tokens must be at least 1, got {self.extend_vocab_max_tokens}.")
        _check(problems)


@dataclass
class TrainConfig:
    """How to fine-tune."""

    method: str = ""
    """Fine-tuning method by registry name: `full`, `lora`, `adalora`, `ia3`, `adapter-houlsby`,
    `adapter-pfeiffer`, `prefix` or `prompt` (more can be registered; `lmforge.train.METHODS` lists
    them). Unset: `full` to classify, `lora` for `task: generate` (a 135M-parameter LM trains ~3x
    faster with adapters)."""
    epochs: float = 1.5
    """Passes over the training split (ignored when `max_steps` is set). 1.5 keeps the demo
    (airline-tweets, ~11.6k training texts) inside 10 minutes on 2 CPU cores: 2 epochs took
    599 s there (85.4 % test accuracy), too close to the limit."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    batch_size: int = 0
    """Training examples per step. Unset (0): 32 to classify; 8 for `task: generate` (a causal LM's
    activations and logits grow with every row: 32 was killed for memory on 24 GB, 8 peaked at 11 GB)."""
    eval_batch_size: int = 128
    """Examples per forward pass at evaluation. `task: generate` takes at most `batch_size` (a causal
    LM's logits are rows x length x vocabulary: 128 x 512 x 49,152 floats are 25 GB)."""
    learning_rate: float = 1e-4
    """Peak learning rate."""
    optimizer: Literal["adamw", "sgd", "rmsprop"] = "adamw"
    """Optimizer."""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Learning-rate decay after warmup."""
    warmup_ratio: float = 0.06
    """Fraction of steps spent warming the learning rate up from 0."""
    weight_decay: float = 0.01
    """Decoupled weight decay (not applied to biases and LayerNorm)."""
    dropout: float | None = None
    """Override the model's hidden and attention dropout."""
    freeze_embeddings: bool = True
    """Keep the word-embedding matrix fixed (`full` method). It holds half of a small encoder's
    weights but barely moves in fine-tuning; freezing it makes each step ~10% faster here."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this (0 turns clipping off)."""
    early_stopping_patience: int | None = 2
    """Stop when the validation score (macro-F1 to classify, loss for `task: generate`) has not
    improved for this many evaluations (null: never)."""
    eval_steps: int | None = None
    """Evaluate (and checkpoint) every N steps; once per epoch when unset."""
    save_steps: int | None = None
    """Checkpoint every N steps; defaults to `eval_steps` (they must agree when both are set)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk (the best one is always kept)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`auto` trains with bf16 autocast only where the CPU runs it fast (AMX), else fp32."""
    adversarial: Literal["none", "fgm"] = "none"
    """FGM adversarial training on the word embeddings (Miyato et al., 2017)."""
    adversarial_epsilon: float = 1.0
    """Size of the FGM perturbation (L2 norm)."""
    group_by_length: bool = True
    """Batch texts of similar length together so padding stays small."""
    packing: bool = False
    """`task: generate`: put a whole batch of examples into one row, none padded, with attention
    that cannot cross from one example into the next (position ids restart at 0 per example).
    Off: each example is its own row, padded to the longest of its batch."""
    seed: int = 42
    """Seed of initialization, dropout and data order."""
    threads: int | None = None
    """Torch intra-op threads; all cores when unset."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: `auto` takes a CUDA GPU when torch sees one, else the CPU."""
    logging_steps: int = 20
    """Log loss and learning rate every N steps (the trackers and the progress bar)."""
    track: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers: `tensorboard` (events in `logs/tensorboard/`) and `mlflow` (params,
    metrics and artifacts in a local MLflow store; the `mlflow` extra). `[]` logs to neither."""
    mlflow_uri: str | None = None
    """Where `mlflow` logs: a folder (holding `mlflow.db` and `artifacts/`) or a `sqlite:///` URI.
    Unset: the run's own store, `logs/mlflow/`. Point several runs at one folder to see them side by side."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA hyperparameters."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """Bottleneck-adapter hyperparameters (`adapter-houlsby`, `adapter-pfeiffer`)."""
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    """Prefix-tuning hyperparameters (`prefix`)."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """Prompt-tuning hyperparameters (`prompt`)."""
    adalora: AdaLoraConfig = field(default_factory=AdaLoraConfig)
    """AdaLoRA hyperparameters (its rank budget and schedule)."""
    ia3: IA3Config = field(default_factory=IA3Config)
    """(IA)^3 settings (which modules are rescaled)."""

    def __post_init__(self) -> None:
        problems = []
        if self.epochs <= 0:
            problems.append(f"train.epochs must be positive, got {self.epochs}.")
        for key in ("max_steps", "eval_steps", "save_steps"):
            value = getattr(self, key)
            if value is not None and value < 1:
                problems.append(f"train.{key} must be at least 1 (or null), got {value}.")
        for key in ("batch_size", "eval_batch_size", "save_total_limit", "logging_steps"):
            if getattr(self, key) < (0 if key == "batch_size" else 1):  # batch_size 0: the task's default
                problems.append(f"train.{key} must be at least 1, got {getattr(self, key)}.")
        if not 0.0 < self.learning_rate < 1.0:
            problems.append(f"train.learning_rate must be in (0, 1), got {self.learning_rate}.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.weight_decay < 0:
            problems.append(f"train.weight_decay must be >= 0, got {self.weight_decay}.")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            problems.append(f"train.dropout must be in [0, 1), got {self.dropout}.")
        if self.max_grad_norm < 0:
            problems.append(f"train.max_grad_norm must be >= 0, got {self.max_grad_norm}.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append(
                f"train.early_stopping_patience must be at least 1 (or null), got {self.early_stopping_patience}."
            )
        if self.eval_steps and self.save_steps and self.eval_steps != self.save_steps:
            problems.append(
                f"train.eval_steps ({self.eval_steps}) and train.save_steps ({self.save_steps}) must agree: "
                "the best checkpoint is chosen at evaluations. Set only one of them."
            )
        if self.adversarial_epsilon <= 0:
            problems.append(f"train.adversarial_epsilon must be positive, got {self.adversarial_epsilon}.")
        if self.threads is not None and self.threads < 1:
            problems.append(f"train.threads must be at least 1, got {self.threads}.")
        problems += tracking_problems(self.track, self.mlflow_uri)
        _check(problems)

    @property
    def checkpoint_steps(self) -> int | None:
        """Steps between evaluations and checkpoints; None means once per epoch."""
        return self.eval_steps or self.save_steps


@dataclass
class Spec:
    """A whole lmforge job. Every section is optional."""

    name: str = "default"
    """A name for the run (used in reports and the model card)."""
    task: Literal["classify", "generate"] | None = None
    """`classify` (text -> label) or `generate` (prompt -> answer, a causal LM); taken from the
    model's kind (encoder or causal-lm) when unset."""
    data: DataConfig = field(default_factory=DataConfig)
    """Input data, cleaning and splitting."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The pretrained model."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Fine-tuning."""
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    tune: TuneConfig = field(default_factory=TuneConfig)
    """Hyper-parameter search (`lmforge tune`); the other verbs ignore it."""
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    """A recommender (`lmforge recommend train`); the other verbs ignore it."""
    bot: BotConfig = field(default_factory=BotConfig)
    """The customer-service bot around the classifier (`lmforge bot build`); the other verbs ignore it."""
    watch: WatchConfig = field(default_factory=WatchConfig)
    """The sentiment watch over a stream (`lmforge watch replay|eval`); the other verbs ignore it."""
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    """Retraining from production feedback (`lmforge retrain`); the other verbs ignore it."""

    def __post_init__(self) -> None:
        # Which keys the user left to the task's defaults, kept (outside the fields, so it never
        # reaches spec.yaml) until the task is known: with `task` unset it comes from the model.
        unset = {key for key, value in (("data.dataset", self.data.path or self.data.dataset),
                                        ("model.name", self.model.name), ("model.max_length", self.model.max_length),
                                        ("train.method", self.train.method),
                                        ("train.batch_size", self.train.batch_size)) if not value}
        vars(self)["_unset"] = frozenset(unset)
        self._fill_defaults()

    def _fill_defaults(self) -> None:
        """Give every key left unset the default of ``self.task`` (unset: the classification job)."""
        defaults = _GENERATE_DEFAULTS if self.task == "generate" else _CLASSIFY_DEFAULTS
        unset: frozenset[str] = vars(self)["_unset"]
        # The embedded default job (data.dataset: a packaged dataset needs no file on disk).
        for key in unset:
            section, name = key.split(".")
            setattr(getattr(self, section), name, defaults[key])
        if self.task == "generate" and self.data.augment.enabled:
            raise ConfigError(
                "data.augment.enabled is true but task is 'generate': augmentation (word swaps, "
                "deletions) would corrupt the answers a model learns to write. Set data.augment.enabled=false."
            )

    def left_unset(self, key: str) -> bool:
        """Whether the user left ``key`` (``data.dataset``, ``model.name``, ``model.max_length``,
        ``train.method`` or ``train.batch_size``) to its default, so that a later stage may still choose it."""
        unset: frozenset[str] = vars(self)["_unset"]
        return key in unset

    def resolve_task(self, kind: str) -> None:
        """Set ``task`` from the model's kind (``encoder`` or ``causal-lm``) when unset, or check it.

        The keys the user left unset take the resolved task's defaults (a causal LM given as
        ``model.name`` with no ``task`` trains with LoRA at 512 tokens).

        Raises:
            ConfigError: ``task`` is set and the model is the other kind.
        """
        wanted: Literal["classify", "generate"] = "generate" if kind == "causal-lm" else "classify"
        if self.task is None:
            self.task = wanted
            self._fill_defaults()
            return
        if self.task != wanted:
            fix = ("a causal LM such as smollm2-135m" if self.task == "generate"
                   else "an encoder such as minilm-l6")
            raise ConfigError(
                f"task is '{self.task}' but model.name '{self.model.name}' is a{'n' if kind == 'encoder' else ''} "
                f"{kind}, which cannot {'generate answers' if self.task == 'generate' else 'classify text'}. "
                f"Point model.name at {fix}, or set task: {wanted}."
            )


_CLASSIFY_DEFAULTS: dict[str, str | int] = {
    "data.dataset": "airline-tweets", "model.name": "minilm-l6", "model.max_length": 128, "train.method": "full",
    "train.batch_size": 32,
}
_GENERATE_DEFAULTS: dict[str, str | int] = {
    "data.dataset": "support-answers", "model.name": "smollm2-135m", "model.max_length": 512, "train.method": "lora",
    "train.batch_size": 8,
}
