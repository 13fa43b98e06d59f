"""The ``recommend:`` section (``lmforge recommend train``): interactions, item texts, split, models.

The text model's encoder, method and optimizer come from the spec's own ``model`` and ``train``
sections (``model.name``, ``model.max_length``, ``train.method`` full or lora,
``train.learning_rate``, ``train.batch_size``, ``train.max_steps``, ``train.seed``,
``train.lora``), so a recommender fine-tunes its encoder with the settings a classifier would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lmforge.errors import ConfigError

__all__ = ["InteractionsConfig", "ItemsConfig", "RecommendConfig", "TextModelConfig"]

SPLITS = ("ratio", "loo", "cold", "none")
"""The evaluation protocols ``recommend.split`` names."""


@dataclass
class InteractionsConfig:
    """Who interacted with what: one row per (user, item), with an optional rating and time."""

    path: str | None = None
    """A CSV, JSONL or Parquet file of interactions (required by `lmforge recommend train`)."""
    user_column: str = "user_id"
    """Column holding the user id (read as text: ids come back exactly as the file writes them)."""
    item_column: str = "item_id"
    """Column holding the item id."""
    rating_column: str = "rating"
    """Column holding the rating; needed only when `recommend.min_rating` is set."""
    time_column: str = "timestamp"
    """Column holding the time (a number, or a date pandas can parse); needed only by `split: loo`,
    and used when present to order a user's history (oldest first)."""


@dataclass
class ItemsConfig:
    """Item descriptions: the text the text model reads."""

    path: str | None = None
    """A CSV, JSONL or Parquet file with one row per item. Unset: no text model (collaborative only)."""
    id_column: str | None = None
    """Column holding the item id; unset: the same name as `recommend.interactions.item_column`."""
    text_columns: list[str] | None = None
    """Columns joined (in this order, with ". ") into the item's text; unset: every column but the id."""


@dataclass
class TextModelConfig:
    """The two-tower text model: the spec's encoder fine-tuned on (history text -> next item text)."""

    enabled: bool = True
    """Train the text model (and the blend); false measures the collaborative models only."""
    history_items: int = 5
    """A user's history text is the texts of their last N positives (most recent first)."""
    history_windows: int = 4
    """A user's vector is the mean embedding of up to this many consecutive windows of
    `history_items` positives (most recent first): one window reads only the latest taste."""
    max_pairs: int = 4000
    """At most this many (history, next item) training pairs (a seeded sample): bounds training time."""
    epochs: float = 1.0
    """Passes over the pairs (ignored when `train.max_steps` is set)."""
    temperature: float = 0.05
    """Softmax temperature of the in-batch contrastive loss (cosine similarities / temperature)."""

    def __post_init__(self) -> None:
        problems = []
        for key in ("history_items", "history_windows", "max_pairs"):
            if getattr(self, key) < 1:
                problems.append(f"recommend.text.{key} must be at least 1, got {getattr(self, key)}.")
        if self.epochs <= 0:
            problems.append(f"recommend.text.epochs must be positive, got {self.epochs}.")
        if not 0.0 < self.temperature <= 1.0:
            problems.append(f"recommend.text.temperature must be in (0, 1], got {self.temperature}.")
        if problems:
            raise ConfigError(problems)


@dataclass
class RecommendConfig:
    """A recommender from interactions and item texts (`lmforge recommend train SPEC --out DIR`)."""

    interactions: InteractionsConfig = field(default_factory=InteractionsConfig)
    """The interactions file and its column names."""
    items: ItemsConfig = field(default_factory=ItemsConfig)
    """The item-text file and its column names."""
    min_rating: float | None = None
    """Interactions rated at least this count as positives (the rest are dropped); unset: every one."""
    require_text: bool = False
    """An interacted item with no text is an error (exit 2) instead of a warning (it then gets
    collaborative scores only)."""
    split: Literal["ratio", "loo", "cold", "none"] = "ratio"
    """`ratio`: a seeded random `test_fraction` of each user's positives is the test set; `loo`: each
    user's last positive by time; `cold`: a seeded `test_fraction` of the items is held out entirely
    (their interactions are the test set, ranked among those items); `none`: train on everything
    (no test metrics, for use with an external test set). Validation is carved from the training
    part by the same protocol."""
    test_fraction: float = 0.2
    """`ratio`: share of each user's positives held out; `cold`: share of the items held out."""
    val_fraction: float = 0.1
    """Share carved from the training part for validation (the blend weights are fitted there)."""
    min_positives: int = 3
    """Users with fewer positives are reported and left out of splitting and evaluation."""
    seed: int = 42
    """Seed of the splits and the pair sample."""
    ease_lambda: float = 250.0
    """L2 regularization of EASE (Steck, 2019)."""
    max_k: int = 100
    """Recommendations stored per user for `lmforge recommend predict` (its `--k` at most this)."""
    text: TextModelConfig = field(default_factory=TextModelConfig)
    """The two-tower text model."""

    def __post_init__(self) -> None:
        problems = []
        for key in ("test_fraction", "val_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                problems.append(f"recommend.{key} must be in (0, 1), got {value}.")
        if self.test_fraction + self.val_fraction >= 0.9:
            problems.append(f"recommend.test_fraction + recommend.val_fraction is "
                            f"{self.test_fraction + self.val_fraction:.2f}; leave at least 10% for training.")
        if self.min_positives < 1:
            problems.append(f"recommend.min_positives must be at least 1, got {self.min_positives}.")
        if self.ease_lambda <= 0:
            problems.append(f"recommend.ease_lambda must be positive, got {self.ease_lambda}.")
        if self.max_k < 1:
            problems.append(f"recommend.max_k must be at least 1, got {self.max_k}.")
        if problems:
            raise ConfigError(problems)
