"""The ``bot:`` section (``lmforge bot build``): out-of-scope detection, the FAQ, grounded answers,
placeholders and escalation of the customer-service bot (``lmforge.apps.support``).

The spec's ``data``/``model``/``train`` sections train the bot's intent classifier as any
classification run; this section only adds what the bot needs around it. The other verbs ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lmforge.errors import ConfigError

__all__ = [
    "OOS_METHODS",
    "BotConfig",
    "BotGeneratorConfig",
    "EscalateConfig",
    "FaqConfig",
    "OosConfig",
    "SentimentConfig",
]

OOS_METHODS = ("max-prob", "energy", "mahalanobis", "knn")
"""The out-of-scope scores ``bot.oos.method`` may name (besides ``auto``, which picks one of them)."""


def _check(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


@dataclass
class OosConfig:
    """How the bot knows a question is none of its intents."""

    path: str | None = None
    """Examples of out-of-scope questions (CSV, JSONL or Parquet with the `data.text_column`), used only to
    calibrate and to let `auto` choose; unset: calibrate on the in-scope validation split alone."""
    method: Literal["max-prob", "energy", "mahalanobis", "knn", "auto"] = "auto"
    """The score: the top softmax probability, the energy (log-sum-exp of the logits), the Mahalanobis
    distance of the encoder's mean-pooled embedding to the nearest intent (class means, shared covariance,
    fitted on the training split), `knn` (needs `path`: the mean cosine similarity to the `knn_k` nearest
    training questions minus that to the `knn_k` nearest examples in `path`), or `auto`: the one with the highest out-of-scope
    recall on `path` at the calibrated threshold (`knn` scored leaving each example out; `max-prob` when
    there is no `path`: nothing to choose on)."""
    knn_k: int = 3
    """How many nearest neighbours the `knn` score averages over, on each side."""
    target_in_scope_recall: float = 0.95
    """The threshold keeps this share of the in-scope validation questions in scope."""
    label: str = "oos"
    """The intent name that marks an out-of-scope record in `lmforge bot eval` files."""

    def __post_init__(self) -> None:
        if self.method == "knn" and not self.path:
            raise ConfigError("bot.oos.method knn compares questions with out-of-scope examples: set bot.oos.path "
                              "to a file of them, or pick max-prob, energy, mahalanobis or auto.")
        if self.knn_k < 1:
            raise ConfigError(f"bot.oos.knn_k must be at least 1, got {self.knn_k}.")
        if not 0.5 <= self.target_in_scope_recall <= 1.0:
            raise ConfigError(
                f"bot.oos.target_in_scope_recall must be in [0.5, 1], got {self.target_in_scope_recall}."
            )


@dataclass
class FaqConfig:
    """The company's FAQ: the answers the bot gives, retrieved by a hybrid of embeddings and BM25."""

    path: str | None = None
    """A CSV, JSONL or Parquet file with question and answer columns (and optionally an intent column);
    unset: the bot classifies and escalates but answers nothing."""
    question_column: str = "question"
    """Column holding the FAQ question (Bitext: `instruction`)."""
    answer_column: str = "answer"
    """Column holding the answer (Bitext: `response`)."""
    intent_column: str = "intent"
    """Column holding the entry's intent; when present, an in-scope question is answered from the
    entries of its predicted intent."""
    top_k: int = 3
    """Entries returned as `sources` (and given to the generator)."""
    embedding_weight: float = 0.5
    """Hybrid score = weight x embedding cosine + (1 - weight) x BM25 normalized to [0, 1] per question
    (1: embeddings only, 0: BM25 only)."""

    def __post_init__(self) -> None:
        problems = []
        if self.top_k < 1:
            problems.append(f"bot.faq.top_k must be at least 1, got {self.top_k}.")
        if not 0.0 <= self.embedding_weight <= 1.0:
            problems.append(f"bot.faq.embedding_weight must be in [0, 1], got {self.embedding_weight}.")
        _check(problems)


@dataclass
class BotGeneratorConfig:
    """A generative run that rewrites the retrieved answer for the question, grounded in it."""

    run: str | None = None
    """A `task: generate` run directory; unset: the bot sends the retrieved answer itself."""
    max_new_tokens: int = 128
    """Longest rewritten answer, in tokens."""
    min_overlap: float = 0.5
    """Share of the rewritten answer's words that must appear in the retrieved entries; below it the
    answer is not grounded and the retrieved answer is sent instead."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"bot.generator.max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if not 0.0 < self.min_overlap <= 1.0:
            problems.append(f"bot.generator.min_overlap must be in (0, 1], got {self.min_overlap}.")
        _check(problems)


@dataclass
class SentimentConfig:
    """A sentiment classifier run whose verdict can hand an angry customer to a person."""

    run: str | None = None
    """A classification run directory (e.g. trained on airline-tweets); unset: no sentiment check."""
    labels: list[str] = field(default_factory=lambda: ["negative"])
    """Its labels that mean the customer is angry."""
    min_score: float = 0.8
    """Escalate when one of `labels` has at least this probability."""

    def __post_init__(self) -> None:
        problems = []
        if not self.labels:
            problems.append("bot.sentiment.labels must name at least one label (e.g. [negative]).")
        if not 0.0 < self.min_score <= 1.0:
            problems.append(f"bot.sentiment.min_score must be in (0, 1], got {self.min_score}.")
        _check(problems)


@dataclass
class EscalateConfig:
    """When the bot hands the conversation to a person."""

    intents: list[str] = field(default_factory=list)
    """Intents that always go to a person (e.g. `contact_human_agent`)."""
    after_failures: int = 3
    """Escalate after this many consecutive failed turns in one session (out of scope, or confidence
    below `min_confidence`); 0 never escalates for that."""
    min_confidence: float = 0.5
    """An in-scope turn whose top probability is below this counts as a failure."""

    def __post_init__(self) -> None:
        problems = []
        if self.after_failures < 0:
            problems.append(f"bot.escalate.after_failures must be >= 0, got {self.after_failures}.")
        if not 0.0 <= self.min_confidence <= 1.0:
            problems.append(f"bot.escalate.min_confidence must be in [0, 1], got {self.min_confidence}.")
        _check(problems)


@dataclass
class BotConfig:
    """The customer-service bot (`lmforge bot build SPEC --out DIR`); the other verbs ignore it."""

    oos: OosConfig = field(default_factory=OosConfig)
    """Out-of-scope detection and its calibration."""
    faq: FaqConfig = field(default_factory=FaqConfig)
    """The FAQ the answers come from."""
    generator: BotGeneratorConfig = field(default_factory=BotGeneratorConfig)
    """Optional grounded rewriting of the retrieved answer."""
    placeholders: dict[str, str] = field(default_factory=dict)
    """Values of the `{{...}}` slots in answers (e.g. `Website Name: example.com`); an answer with a
    slot left unfilled is never sent: the bot escalates instead."""
    escalate: EscalateConfig = field(default_factory=EscalateConfig)
    """Hand-over rules."""
    sentiment: SentimentConfig = field(default_factory=SentimentConfig)
    """Optional sentiment check."""

    def __post_init__(self) -> None:
        bad = [f"{key!r}: {value!r}" for key, value in self.placeholders.items()
               if not isinstance(value, str | int | float) or isinstance(value, bool) or not str(key).strip()]
        if bad:
            raise ConfigError(
                f"bot.placeholders must map slot names to text (e.g. 'Website Name: example.com'); "
                f"not text: {', '.join(bad)}."
            )
        self.placeholders = {str(k): str(v) for k, v in self.placeholders.items()}
