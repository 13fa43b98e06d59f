"""``lmforge retrain``: a served run retrained on the labels production feedback gave it.

:func:`retrain` runs five steps, each reading what the previous one wrote:

1. **Feedback** (:func:`collect_feedback`): every classifier prediction of the parent's model in
   the monitor store that has a feedback label, with the text the store kept (masked under
   ``redact``; decrypted under the encrypt policies with the key ring; refused, with the policy
   that would work named, when the store kept no text).
2. **Merge** (:func:`merge_feedback`): one label per text (the newest feedback wins, and it
   overrides the parent's own training label for that text), texts that duplicate the parent's
   test split exactly or nearly dropped (the leakage check), a seeded share held out as a *fresh*
   test set, the rest added to the parent's training split. Counted at every step.
3. **Train**: the parent's spec (``retrain.*`` from it or ``--set``), warm-started from the parent's
   fine-tuned weights (``retrain.start: parent``: saved once as ``NEW/base``, the spec's
   ``model.name``) or from its base model; the parent's validation and test splits unchanged.
4. **Evaluate**: the usual evaluation on the parent's test split, then both models on the old
   test split and the fresh one (``NEW/eval/retrain.json``).
5. **Guard**: ``promotable`` is false when old-test accuracy dropped by more than
   ``retrain.max_forgetting`` points; ``--register`` (the CLI) refuses such a run.

NEW's manifest names the parent (``parent``) and what feedback it used (``retrain``).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.config import load_spec
from lmforge.data import find_leakage
from lmforge.errors import ConfigError, DataError
from lmforge.evaluate import evaluate
from lmforge.monitor import open_store, reveal_texts
from lmforge.pipeline import init_run
from lmforge.predict import MODULES_FORMAT, TorchPredictor, load_predictor, read_model_meta
from lmforge.rundir import RunDir, atomic_write_json, atomic_write_text
from lmforge.train import train

__all__ = ["FRESH_TEST", "RETRAIN_REPORT", "FeedbackExample", "Merged", "collect_feedback", "merge_feedback", "retrain"]

log = logging.getLogger(__name__)

RETRAIN_REPORT = "retrain.json"
FRESH_TEST = "fresh_test.jsonl"


@dataclass(frozen=True)
class FeedbackExample:
    """One labelled served text."""

    text: str
    label: str
    ts: float
    """When the label was given (the newest label of a text wins)."""
    prediction_id: str


def collect_feedback(url: str, model: str, labels: list[str], *, key_file: str | None = None) -> list[FeedbackExample]:
    """The feedback-labelled classifier predictions of ``model`` in the store at ``url``, oldest label first.

    Raises:
        DataError: none has a usable text (the message says which text policy would keep one),
            or a label is not one of ``labels``.
    """
    with open_store(url) as store:
        sa, p, f = store.sa, store.t["predictions"], store.t["feedback"]
        q = (sa.select(p.c.id, p.c.text, p.c.text_policy, f.c.label, f.c.ts)
             .join(f, f.c.prediction_id == p.c.id)
             .where(p.c.model == model, p.c.output.is_(None))
             .order_by(f.c.ts, p.c.id))
        with store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
    usable = [r for r in rows if r["text"] is not None]
    if not usable:
        policies = ", ".join(sorted({r["text_policy"] for r in rows})) or "none stored"
        raise DataError(
            f"The monitor store has {len(rows)} feedback label(s) for model {model!r} but no text to train on "
            f"(text_policy: {policies}). Serve with monitor.text_policy: redact (the default) or redact+encrypt "
            "to keep texts, then collect feedback again."
            if rows else
            f"The monitor store has no feedback for model {model!r}; label served predictions first "
            "(POST /v1/feedback, or lmforge monitor sample + lmforge label import), or name the served model "
            "with --model."
        )
    texts = reveal_texts(usable, key_file)
    unknown = sorted({r["label"] for r in usable} - set(labels))
    if unknown:
        raise DataError(f"Feedback labels {', '.join(map(repr, unknown))} are not among the run's labels "
                        f"({', '.join(labels)}).")
    return [FeedbackExample(t, r["label"], float(r["ts"]), r["id"]) for t, r in zip(texts, usable, strict=True)]


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass
class Merged:
    """The parent's training split with the feedback merged in, and the fresh test set."""

    train: list[dict[str, Any]]
    fresh_test: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)


def merge_feedback(
    parent_train: list[dict[str, Any]],
    parent_test: list[str],
    feedback: list[FeedbackExample],
    *,
    fresh_share: float,
    seed: int,
    near_threshold: float,
) -> Merged:
    """Merge ``feedback`` into ``parent_train`` (see the module docstring for the rules).

    The fresh test set is drawn only from texts the parent never trained on, so it is fresh to both models.
    """
    newest: dict[str, FeedbackExample] = {}
    conflicts = 0
    for example in sorted(feedback, key=lambda e: e.ts):
        key = _key(example.text)
        if key in newest and newest[key].label != example.label:
            conflicts += 1
        newest[key] = example  # a later label for the same text replaces an earlier one
    unique = list(newest.values())
    leaked = find_leakage(parent_test, [e.text for e in unique], threshold=near_threshold, seed=seed)
    clean = [e for e, bad in zip(unique, leaked.exact | leaked.near, strict=True) if not bad]
    trained_keys = {_key(row["text"]) for row in parent_train}
    known = [e for e in clean if _key(e.text) in trained_keys]
    unseen = [e for e in clean if _key(e.text) not in trained_keys]
    order = np.random.default_rng(seed).permutation(len(unseen))
    n_fresh = int(round(fresh_share * len(unseen)))
    fresh = [unseen[i] for i in sorted(order[:n_fresh])]
    new = [unseen[i] for i in sorted(order[n_fresh:])]
    relabel = {_key(e.text): e.label for e in known}
    train_rows, relabelled = [], 0
    for row in parent_train:
        label = relabel.get(_key(row["text"]), row["label"])
        relabelled += label != row["label"]
        train_rows.append(row if label == row["label"] else {**row, "label": label})
    train_rows.extend({"text": e.text, "label": e.label} for e in new)
    counts = {
        "feedback": len(feedback),
        "distinct_texts": len(unique),
        "conflicting_labels": conflicts,
        "leaked_exact": int(leaked.exact.sum()),
        "leaked_near": int(leaked.near.sum()),
        "already_in_training": len(known),
        "relabelled_training_texts": relabelled,
        "fresh_test": len(fresh),
        "new_training_texts": len(new),
        "train_total": len(train_rows),
    }
    return Merged(train_rows, [{"text": e.text, "label": e.label} for e in fresh], counts)


def _read_split(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_split(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _accuracy(predictor: Any, rows: list[dict[str, Any]]) -> float | None:
    if not rows:
        return None
    predicted = [p["label"] for p in predictor.predict([r["text"] for r in rows])]
    return float(np.mean([p == r["label"] for p, r in zip(predicted, rows, strict=True)]))


def retrain(
    parent_dir: str | Path,
    store_url: str,
    out: str | Path,
    *,
    model: str,
    overrides: Sequence[str] = (),
    key_file: str | None = None,
    verified: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Retrain the classifier run ``parent_dir`` on its feedback in the store at ``store_url`` into ``out``.

    ``model`` is the name the parent is served under (its feedback's ``model``); ``verified`` is
    the parent's :func:`lmforge.guard.trust_run` check (the caller verifies). Returns the report
    written to ``out/eval/retrain.json``. When anything fails, ``out`` is removed.

    Raises:
        ConfigError: a generative parent, or warm-starting a run whose modules do not merge.
        DataError: no usable feedback, fewer than ``retrain.min_feedback`` examples, or ``out`` is not empty.
    """
    parent = RunDir(parent_dir)
    parent.require("spec.yaml", hint="Give the directory of a trained classifier run.")
    spec = load_spec(parent.spec_path, list(overrides))
    if spec.task == "generate":
        raise ConfigError(f"{parent.root} is a generative run; `lmforge retrain` retrains classifiers.")
    labels: list[str] = json.loads(parent.labels_path.read_text(encoding="utf-8"))["labels"]
    new = RunDir(out)
    if new.root.exists() and any(new.root.iterdir()):
        raise DataError(f"{new.root} is not empty; give a new folder for the retrained run.")
    cfg = spec.retrain
    feedback = collect_feedback(store_url, model, labels, key_file=key_file)
    merged = merge_feedback(_read_split(parent.split_path("train")),
                            [r["text"] for r in _read_split(parent.split_path("test"))], feedback,
                            fresh_share=cfg.fresh_test_share, seed=spec.data.seed,
                            near_threshold=spec.data.near_duplicate_threshold)
    usable = merged.counts["fresh_test"] + merged.counts["new_training_texts"] + merged.counts["already_in_training"]
    if usable < cfg.min_feedback:
        raise DataError(f"Only {usable} usable feedback label(s) for model {model!r} (of {len(feedback)}; "
                        f"counts: {merged.counts}); retrain.min_feedback is {cfg.min_feedback}.")
    parent_model = load_predictor(parent, "fp32", verified=verified)
    try:
        return _retrain_into(spec, parent, new, parent_model, merged, model, progress)
    except BaseException:
        shutil.rmtree(new.root, ignore_errors=True)
        raise


def _retrain_into(spec: Any, parent: RunDir, new: RunDir, parent_model: Any, merged: Merged, model: str,
                  progress: bool) -> dict[str, Any]:
    new.root.mkdir(parents=True, exist_ok=True)
    if spec.retrain.start == "parent":
        if not isinstance(parent_model, TorchPredictor) or read_model_meta(parent.model_dir).get("format") == MODULES_FORMAT:
            raise ConfigError(f"{parent.root}'s model cannot be a starting point (its trained modules do not merge "
                              "into the encoder); set retrain.start: base.")
        base = new.root / "base"
        parent_model.model.save_pretrained(base, safe_serialization=True)
        parent_model.tokenizer.save_pretrained(base)
        spec.model.name = str(base.resolve())
    init_run(spec, new.root)
    new.data_dir.mkdir(parents=True, exist_ok=True)
    _write_split(new.split_path("train"), merged.train)
    for split in ("val", "test"):
        shutil.copyfile(parent.split_path(split), new.split_path(split))
    shutil.copyfile(parent.labels_path, new.labels_path)
    _write_split(new.data_dir / FRESH_TEST, merged.fresh_test)
    log.info("retrain: %s", merged.counts)
    train(spec, new, progress=progress)
    metrics = evaluate(spec, new, progress=progress)
    new_model = load_predictor(new, "fp32")
    old_test = _read_split(new.split_path("test"))
    before, after = _accuracy(parent_model, old_test), _accuracy(new_model, old_test)
    drop = round(100 * ((before or 0.0) - (after or 0.0)), 4)
    report = {
        "parent": str(parent.root),
        "model": model,
        "start": spec.retrain.start,
        "feedback": merged.counts,
        "old_test": {"n": len(old_test), "parent_accuracy": before, "accuracy": after, "drop_points": drop},
        "fresh_test": {"n": len(merged.fresh_test), "parent_accuracy": _accuracy(parent_model, merged.fresh_test),
                       "accuracy": _accuracy(new_model, merged.fresh_test)},
        "max_forgetting": spec.retrain.max_forgetting,
        "promotable": drop <= spec.retrain.max_forgetting,
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_f1") if k in metrics},
    }
    atomic_write_json(new.eval_dir / RETRAIN_REPORT, report)
    new.update_manifest(parent=str(parent.root), retrain={"feedback": merged.counts, "promotable": report["promotable"]})
    return report
