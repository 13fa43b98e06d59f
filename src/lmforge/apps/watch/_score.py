"""Scoring a stream: each text's negative probability and predicted sentiment, and its topic.

Both runs are verified (``lmforge.guard.trust_run``, as ``lmforge predict`` does) and loaded
through ``lmforge.predict.load_predictor`` (the run's selected variant, or ``watch.variant``),
then scored in batches of ``watch.batch_size``. The negative label is checked against the
sentiment run's labels before any text is scored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.apps.watch._aggregate import ALL_TOPICS
from lmforge.config import WatchConfig
from lmforge.errors import ConfigError
from lmforge.guard import trust_run
from lmforge.predict import Predictor, load_predictor

__all__ = ["Scored", "Scorer"]


@dataclass
class Scored:
    """Per text of a stream: negative probability, negative or not, topic; and the time scoring took."""

    negative_proba: np.ndarray
    negative: np.ndarray
    topics: list[str]
    seconds: float

    @property
    def texts_per_s(self) -> float:
        return len(self.topics) / self.seconds if self.seconds > 0 else float("inf")


class Scorer:
    """The sentiment (and topic) models of a watch, loaded once.

    Args:
        sentiment: the sentiment classifier.
        negative_label: the label whose share is watched; must be one of ``sentiment.labels``.
        topic: the topic classifier, or None (every text is topic ``all``).
        batch_size: texts per model call.
    """

    def __init__(self, sentiment: Predictor, negative_label: str, topic: Predictor | None = None,
                 batch_size: int = 64) -> None:
        if negative_label not in sentiment.labels:
            raise ConfigError(
                f"watch.negative_label {negative_label!r} is not a label of the sentiment run; its labels are: "
                f"{', '.join(sentiment.labels)}. Set watch.negative_label to one of them."
            )
        self.sentiment = sentiment
        self.negative_index = sentiment.labels.index(negative_label)
        self.topic = topic
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg: WatchConfig, *, public_key: str | Path | None = None,
                    allow_unsigned: bool = False) -> Scorer:
        """Verify and load ``cfg.sentiment_run`` (and ``cfg.topic_run``).

        Raises:
            ConfigError: ``watch.sentiment_run`` is unset, or the negative label is not one of its labels.
            RunDirError, IntegrityError: a run is missing, tampered with, or unsigned (unless allowed).
        """
        if not cfg.sentiment_run:
            raise ConfigError("watch.sentiment_run is required: the run directory of a sentiment classifier "
                              "(e.g. one `lmforge run` trained on Bearish/Bullish/Neutral tweets).")

        def load(run: str) -> Predictor:
            check = trust_run(run, public_key, allow_unsigned=allow_unsigned)
            return load_predictor(run, cfg.variant, verified=check)

        sentiment = load(cfg.sentiment_run)
        scorer = cls(sentiment, cfg.negative_label, None, cfg.batch_size)  # the label is checked before loading more
        scorer.topic = load(cfg.topic_run) if cfg.topic_run else None
        return scorer

    def score(self, texts: Sequence[str]) -> Scored:
        """Score every text (negative = the negative label is the predicted one)."""
        started = time.perf_counter()
        proba = self.sentiment.predict_proba(list(texts), batch_size=self.batch_size)
        negative = proba.argmax(axis=1) == self.negative_index if len(texts) else np.zeros(0, dtype=bool)
        if self.topic is not None:
            topic_proba = self.topic.predict_proba(list(texts), batch_size=self.batch_size)
            topics = [self.topic.labels[i] for i in topic_proba.argmax(axis=1)]
        else:
            topics = [ALL_TOPICS] * len(texts)
        return Scored(negative_proba=proba[:, self.negative_index].astype(float), negative=negative,
                      topics=topics, seconds=time.perf_counter() - started)
