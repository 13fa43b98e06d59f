"""The evaluate stage: predict the test split, write eval/, MODEL_CARD.md and the manifest metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmforge.errors import DataError, RunDirError
from lmforge.evaluate._analysis import collect_errors, error_rate_by_length, weak_classes
from lmforge.evaluate._card import render_model_card
from lmforge.evaluate._explained import explain_sample
from lmforge.evaluate._metrics import compute_metrics
from lmforge.evaluate._plots import plot_calibration, plot_confusion
from lmforge.evaluate._report import render_report
from lmforge.evaluate._summary import run_summary
from lmforge.evaluate._track import log_evaluation
from lmforge.metrics import baseline_scores, beats_baselines
from lmforge.predict import Predictor, load_predictor
from lmforge.rundir import FP32, RunDir, atomic_write_json, atomic_write_text, read_labels, read_split

if TYPE_CHECKING:
    from lmforge.config import Spec

__all__ = ["evaluate", "load_labels", "load_test_split"]

logger = logging.getLogger(__name__)

_PREPARE_HINT = "Run `lmforge prepare spec.yaml` first to write the prepared data splits."


def load_labels(run: RunDir) -> list[str]:
    """The label set of the prepared data (``data/labels.json``), which must not be empty.

    Raises:
        RunDirError: If the file is missing (run ``lmforge prepare``) or malformed.
    """
    labels = read_labels(run)
    if not labels:
        raise RunDirError(f"{run.labels_path} lists no labels. {_PREPARE_HINT}")
    return labels


def load_test_split(run: RunDir) -> tuple[list[str], list[str]]:
    """Texts and labels of the prepared test split (``data/test.jsonl``).

    Raises:
        RunDirError: If the split is missing (run ``lmforge prepare``) or has malformed lines.
        DataError: If the split is empty.
    """
    rows = read_split(run, "test")
    if not rows:
        raise DataError(
            f"The test split {run.split_path('test')} is empty, so there is nothing to evaluate. "
            "Set data.test_fraction above 0 (or data.test_path) and run `lmforge prepare` again."
        )
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _label_indices(test_labels: list[str], model_labels: list[str], data_labels: list[str]) -> np.ndarray:
    if len(set(model_labels)) != len(model_labels):
        raise RunDirError(f"The model's labels are not unique: {model_labels!r}. Re-run `lmforge train`.")
    if set(model_labels) != set(data_labels):
        logger.warning(
            "The model's labels %s differ from the prepared data's %s; was the data prepared again after training?",
            model_labels,
            data_labels,
        )
    index = {label: i for i, label in enumerate(model_labels)}
    unknown = sorted({label for label in test_labels if label not in index})
    if unknown:
        raise DataError(
            f"The test split has labels the model does not know: {unknown}. Model labels: {model_labels}. "
            "The model and the data come from different preparations; run `lmforge train` again."
        )
    return np.array([index[label] for label in test_labels], dtype=np.int64)


def evaluate(
    spec: Spec, run: RunDir | str | Path, predictor: Predictor | None = None, *, progress: bool = False
) -> dict[str, Any]:
    """Evaluate the trained model of ``run`` on its test split and write the evaluation artifacts.

    Writes ``eval/`` (``metrics.json``, ``confusion.png``, ``calibration.png``,
    ``errors.jsonl``, ``report.html``) atomically, then ``MODEL_CARD.md``, then merges the
    headline metrics into the manifest.

    Long because it is the stage read top to bottom: predict, score, explain, write, card, manifest, log.

    Args:
        spec: The resolved spec; ``spec.evaluate`` sets batch size, calibration bins and
            how many errors are kept.
        run: The run directory (or its path).
        predictor: The model to evaluate (only ``labels`` and ``predict_proba`` are used); the
            run's own fp32 model (``lmforge.predict.load_predictor(run, "fp32")``) when None.
        progress: Let the predictor show a progress bar.

    Returns:
        The metrics dict written to ``eval/metrics.json`` (see :func:`compute_metrics`), plus
        ``error_rate_by_length``.

    Raises:
        RunDirError: If the prepared data (or the trained model) is missing.
        DataError: If the test split is malformed, empty, or has labels the model lacks.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    manifest = run.read_manifest()
    seen = manifest.get("train", {}).get("data_fingerprint")
    current = manifest.get("data", {}).get("fingerprint")
    if seen and current and seen != current:
        logger.warning(
            "The data was prepared again after the model was trained (fingerprint %s, model saw %s): "
            "the test split may overlap the model's training data. Run `lmforge train` again.",
            current[:12], seen[:12],
        )
    data_labels = load_labels(run)
    texts, test_labels = load_test_split(run)
    if predictor is None:
        predictor = load_predictor(run, FP32)
    labels = list(predictor.labels)
    y_true = _label_indices(test_labels, labels, data_labels)

    logger.info("Predicting %d test examples (batch size %d)", len(texts), spec.evaluate.batch_size)
    proba = np.asarray(predictor.predict_proba(texts, batch_size=spec.evaluate.batch_size, progress=progress))
    metrics = compute_metrics(y_true, proba, labels, n_bins=spec.evaluate.calibration_bins)
    proba = proba.astype(np.float64) / proba.sum(axis=1, keepdims=True)  # validated by compute_metrics
    correct = proba.argmax(axis=1) == y_true
    metrics["error_rate_by_length"] = error_rate_by_length(texts, correct)
    metrics["baselines"], metrics["baseline_check"] = _baselines(spec, run, labels, y_true, metrics)
    errors = collect_errors(texts, y_true, proba, labels, limit=spec.evaluate.max_errors)
    weak = weak_classes(metrics)
    summary = run_summary(manifest)
    title = spec.name or summary["name"] or run.root.name
    explained = explain_sample(predictor, texts, y_true, proba, labels, n=spec.evaluate.explain_examples,
                               steps=spec.evaluate.explain_steps, seed=spec.data.seed)
    _write_eval(run, title, metrics, labels, summary, errors, weak, explained)
    card = render_model_card(
        name=title,
        metrics=metrics,
        summary=summary,
        weak=weak,
        texts=texts,
        max_length=summary["max_length"] or spec.model.max_length,
    )
    atomic_write_text(run.model_card_path, card)
    run.update_manifest(
        metrics={**{key: metrics[key] for key in ("accuracy", "macro_f1", "ece", "n_test")},
                 "beats_baselines": metrics["baseline_check"]["beats"]},
    )
    log_evaluation(run, metrics)  # into the training's MLflow run, when it had one
    logger.info(
        "Test accuracy %.4f, macro-F1 %.4f, ECE %.4f on %d examples; report at %s",
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["ece"],
        metrics["n_test"],
        run.eval_dir / "report.html",
    )
    if weak:
        logger.warning("Weak classes (low test F1): %s", ", ".join(weak))
    return metrics


def _baselines(spec: Spec, run: RunDir, labels: list[str], y_true: np.ndarray,
               metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The majority and stratified baselines (fitted on the training split's labels) and the check.

    A model that does not beat them is at chance level: it is logged as an error-level
    warning here, and ``--strict`` turns it into exit 3 in the CLI.
    """
    index = {label: i for i, label in enumerate(labels)}
    rows = read_split(run, "train") if run.split_path("train").is_file() else []
    y_train = [index[r["label"]] for r in rows if r["label"] in index]
    scores = baseline_scores(y_train or y_true, y_true, len(labels), spec.data.seed)
    check: dict[str, Any] = dict(beats_baselines(metrics["accuracy"], metrics["macro_f1"], scores,
                                                 spec.evaluate.baseline_margin))
    baselines: dict[str, Any] = {name: dict(values) for name, values in scores.items()}
    baselines["majority"]["label"] = labels[int(baselines["majority"]["class"])]
    check["fitted_on"] = "train" if y_train else "test"  # no training split: the test labels' frequencies
    if not check["beats"]:
        logger.error(
            "CHANCE LEVEL: the model does not beat a baseline that never reads the text (accuracy %.4f vs. "
            "majority class '%s' %.4f, macro-F1 %.4f vs. %.4f; needed %.4f and %.4f with evaluate.baseline_margin "
            "%.2f). It learned next to nothing: check the readability report (data/data_report.json), train "
            "longer, or use a model that reads this language.",
            metrics["accuracy"], baselines["majority"]["label"], baselines["majority"]["accuracy"],
            metrics["macro_f1"], baselines["majority"]["macro_f1"],
            check["required_accuracy"], check["required_macro_f1"], check["margin"],
        )
    return baselines, check


def _write_eval(run: RunDir, title: str, metrics: dict[str, Any], labels: list[str], summary: dict[str, Any],
                errors: list[dict[str, Any]], weak: list[str], explained: dict[str, Any] | None) -> None:
    """Write ``eval/`` atomically: metrics.json, the two plots, errors.jsonl, explanations.json and the HTML report."""
    with run.stage("eval") as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        if explained is not None:
            atomic_write_json(tmp / "explanations.json", explained)
        plot_confusion(metrics["confusion_matrix"], labels, tmp / "confusion.png")
        plot_calibration(metrics["calibration"], metrics["ece"], tmp / "calibration.png")
        atomic_write_text(
            tmp / "errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors)
        )
        report = render_report(
            title=title,
            metrics=metrics,
            labels=labels,
            summary=summary,
            errors=errors,
            by_length=metrics["error_rate_by_length"],
            weak=weak,
            confusion_png=(tmp / "confusion.png").read_bytes(),
            calibration_png=(tmp / "calibration.png").read_bytes(),
            explained=explained,
        )
        atomic_write_text(tmp / "report.html", report)
