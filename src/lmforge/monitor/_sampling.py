"""What to label next: served, unlabelled predictions ranked by how much a label would teach.

:func:`sample_for_labelling` reads the prediction store (classifier predictions with no feedback
whose text the store kept; one per distinct text, the newest) and ranks them by a strategy:

- ``uncertainty``: least confidence, 1 - max p;
- ``margin``: 1 - (p1 - p2), the two most probable labels nearly tied;
- ``entropy``: the entropy of the predicted distribution;
- ``diverse``: k-center greedy (farthest first) on embeddings of the ``pool`` x n most uncertain
  (by entropy), starting from the most uncertain one, so the picks are uncertain *and* unlike each
  other (Sener and Savarese, 2018): near-duplicate uncertain texts teach one lesson, not n.

:func:`import_labels` records the labels a person filled in as feedback, exactly as ``POST
/v1/feedback`` would with an admin key, checking each label against the prediction's own labels.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._jsonl import iter_records
from lmforge.errors import ConfigError, DataError
from lmforge.monitor._store import Store
from lmforge.monitor._text_policy import TextPolicy

__all__ = ["SAMPLING_STRATEGIES", "LabelImport", "acquisition_scores", "import_labels", "k_center",
           "open_store", "read_label_file", "reveal_texts", "sample_for_labelling", "store_url"]

SAMPLING_STRATEGIES = ("uncertainty", "margin", "entropy", "diverse")

Embed = Callable[[list[str]], np.ndarray]
"""Texts -> (N, H) embeddings (unit rows for cosine distance), for ``diverse``."""


def acquisition_scores(proba: np.ndarray, strategy: str) -> np.ndarray:
    """How worth labelling each row of ``proba`` (N, C) is under ``strategy``: higher first."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    if strategy == "uncertainty":
        return 1.0 - p.max(axis=1)
    if strategy == "margin":
        top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros_like(p), p], axis=1)
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if strategy in ("entropy", "diverse"):
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    raise ConfigError(f"Unknown sampling strategy {strategy!r}; choose one of {', '.join(SAMPLING_STRATEGIES)}.")


def k_center(embeddings: np.ndarray, n: int, first: int = 0) -> list[int]:
    """``n`` row indices picked farthest-first (Euclidean), starting from row ``first``."""
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) == 0 or n <= 0:
        return []
    picked = [first]
    dist = np.linalg.norm(x - x[first], axis=1)
    while len(picked) < min(n, len(x)):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0.0:  # every remaining row duplicates a picked one: take them in order
            rest = [i for i in range(len(x)) if i not in set(picked)]
            picked.extend(rest[: n - len(picked)])
            break
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return picked


def _unlabelled(store: Store, model: str | None, version: str | None, limit: int) -> list[dict[str, Any]]:
    """Classifier predictions without feedback, newest first, one per text hash."""
    sa, p, f = store.sa, store.t["predictions"], store.t["feedback"]
    q = (
        sa.select(p.c.id, p.c.ts, p.c.model, p.c.version, p.c.text, p.c.text_hash, p.c.text_policy, p.c.label,
                  p.c.confidence, p.c.scores)
        .outerjoin(f, f.c.prediction_id == p.c.id)
        .where(f.c.prediction_id.is_(None), p.c.output.is_(None))
    )
    if model is not None:
        q = q.where(p.c.model == model)
    if version is not None:
        q = q.where(p.c.version == version)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q.order_by(p.c.ts.desc()).limit(limit))]
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["text_hash"] not in seen:
            seen.add(row["text_hash"])
            out.append(row)
    return out


def sample_for_labelling(
    store: Store,
    n: int,
    strategy: str,
    *,
    model: str | None = None,
    version: str | None = None,
    embed: Embed | None = None,
    pool: int = 5,
    key_file: str | None = None,
    limit: int = 100_000,
) -> list[dict[str, Any]]:
    """The ``n`` stored predictions most worth labelling, best first, each ready to be labelled.

    Each record: ``prediction_id``, ``text`` (as stored: masked under ``redact``, decrypted under
    the encrypt policies with ``key_file``), ``predicted``, ``confidence``, ``scores``, ``model``,
    ``version``, ``strategy``, ``acquisition`` (the strategy's score) and ``label``: null, for the
    labeller to fill in.

    Raises:
        ConfigError: an unknown strategy, ``n`` < 1, or ``diverse`` without ``embed``.
        DataError: no unlabelled prediction kept its text (the message names the policy that would).
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ConfigError(f"Unknown sampling strategy {strategy!r}; choose one of {', '.join(SAMPLING_STRATEGIES)}.")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}.")
    if strategy == "diverse" and embed is None:
        raise ConfigError("The diverse strategy needs embeddings: give the served run (--run RUN).")
    rows = _unlabelled(store, model, version, limit)
    readable = [r for r in rows if r["text"] is not None]
    if not readable:
        policies = sorted({r["text_policy"] for r in rows})
        raise DataError(
            f"No unlabelled prediction in the store has a text to label ({len(rows)} without feedback"
            + (f", stored under text_policy {', '.join(policies)}" if policies else "")
            + "). Serve with monitor.text_policy: redact (the default) or redact+encrypt to keep texts for labelling."
        )
    labels = list(readable[0]["scores"])
    readable = [r for r in readable if list(r["scores"]) == labels]  # one label set: the newest model's
    proba = np.array([[r["scores"][k] for k in labels] for r in readable])
    score = acquisition_scores(proba, strategy)
    order = np.argsort(-score, kind="stable")
    texts = reveal_texts(readable, key_file)
    if strategy == "diverse":
        candidates = [int(i) for i in order[: max(n, pool * n)]]
        vectors = embed([texts[i] for i in candidates])  # type: ignore[misc]
        order = np.array([candidates[i] for i in k_center(vectors, n)])
    return [
        {
            "prediction_id": readable[i]["id"],
            "text": texts[i],
            "predicted": readable[i]["label"],
            "confidence": round(float(readable[i]["confidence"]), 6),
            "scores": readable[i]["scores"],
            "model": readable[i]["model"],
            "version": readable[i]["version"],
            "strategy": strategy,
            "acquisition": round(float(score[i]), 6),
            "label": None,
        }
        for i in order[:n]
    ]


def reveal_texts(rows: list[dict[str, Any]], key_file: str | None = None) -> list[str]:
    """The readable text of each stored row (``text`` and ``text_policy``): decrypted under the encrypt
    policies (the key ring read once per policy), as stored otherwise (masked under ``redact``)."""
    policies = {name: TextPolicy(name, key_file) for name in {r["text_policy"] for r in rows} if "encrypt" in name}
    out = []
    for row in rows:
        policy = policies.get(row["text_policy"])
        out.append((policy.reveal(row["text"]) if policy is not None else row["text"]) or "")
    return out


@dataclass(frozen=True)
class LabelImport:
    """What :func:`import_labels` did, line by line."""

    imported: int
    unchanged: int
    skipped: int
    """Lines without a label (left for later)."""
    problems: list[str]
    """``line N: why`` for each line not imported (unknown id, a label the model lacks, a conflict)."""


def import_labels(store: Store, records: Iterable[tuple[int, dict[str, Any]]], *,
                  override: bool = False) -> LabelImport:
    """Record ``(line number, {prediction_id, label})`` pairs as feedback (labels checked, nothing half-done).

    A prediction that already has another label is a conflict (reported, kept) unless ``override``.
    Every line is checked before anything is written: with any problem, nothing is imported.
    """
    planned: list[dict[str, Any]] = []
    problems: list[str] = []
    unchanged = skipped = 0
    p = store.t["predictions"]
    for line, record in records:
        pid, label = record.get("prediction_id"), record.get("label")
        if label is None or label == "":
            skipped += 1
            continue
        if not isinstance(pid, str) or not isinstance(label, str):
            problems.append(f"line {line}: needs a string prediction_id and label")
            continue
        with store.engine.connect() as conn:
            row = conn.execute(store.sa.select(p.c.model, p.c.version, p.c.label, p.c.ts, p.c.scores, p.c.output)
                               .where(p.c.id == pid)).first()
        if row is None:
            problems.append(f"line {line}: no prediction with id {pid!r} in the store")
            continue
        if row.output is not None or label not in row.scores:
            problems.append(f"line {line}: {label!r} is not one of the model's labels ({', '.join(row.scores)})")
            continue
        previous = store.get_feedback(pid)
        if previous is not None and previous["label"] == label:
            unchanged += 1
            continue
        if previous is not None and not override:
            problems.append(f"line {line}: {pid} already has the label {previous['label']!r} (--override replaces it)")
            continue
        planned.append({"prediction_id": pid, "ts": time.time(), "label": label, "predicted": row.label,
                        "correct": row.label == label, "model": row.model, "version": row.version,
                        "prediction_ts": row.ts, "key_id": None, "correction": None})
    if not problems:
        for feedback in planned:
            store.upsert_feedback(feedback)
    return LabelImport(len(planned) if not problems else 0, unchanged, skipped, problems)


@contextlib.contextmanager
def open_store(url: str) -> Iterator[Store]:
    """The prediction store at ``url`` (SQLite or PostgreSQL), closed on exit."""
    store = Store(url)
    try:
        yield store
    finally:
        store.close()


def store_url(state_or_url: str) -> str:
    """The store of a state folder (``STATE/monitor.db``, as ``lmforge serve --monitor`` keeps it) or a URL as given."""
    if "://" in state_or_url:
        return state_or_url
    folder = Path(state_or_url).expanduser()
    if not (folder / "monitor.db").is_file():
        raise DataError(f"{folder} holds no monitor.db; give the state folder of `lmforge serve --monitor` "
                        "(default .lmforge) or the store's URL (postgresql+psycopg://...).")
    return f"sqlite:///{(folder / 'monitor.db').resolve()}"


def read_label_file(path: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of a JSONL file; a line that is not a JSON object is a :class:`DataError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            return list(iter_records(fh, path))
    except FileNotFoundError:
        raise DataError(f"Label file not found: {path}") from None
