"""The offline drift report: a run's reference against a file of current texts, as HTML + JSON.

``lmforge monitor report --reference RUN --current FILE`` calls :func:`drift_report`.
"""

from __future__ import annotations

import csv
import datetime as dt
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._jsonl import iter_text_records
from lmforge.errors import DataError
from lmforge.guard import RunVerification
from lmforge.monitor._dashboard import PAGE_CSS
from lmforge.monitor._drift import DriftData, DriftResult
from lmforge.monitor._registry import available_detectors, get_detector
from lmforge.monitor._svg import bar_chart, histogram_chart
from lmforge.predict import load_predictor
from lmforge.rundir import MODEL, RunDir, atomic_write_json, atomic_write_text

__all__ = ["drift_report", "read_current"]

SUFFIXES = (".jsonl", ".csv")


def read_current(path: str | Path, text_field: str = "text") -> list[dict[str, Any]]:
    """Records of a JSONL or CSV file, each with a string ``text_field``.

    Raises:
        DataError: the file is missing, of another type, unreadable, or lacks the field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Current data file not found: {path}")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"Cannot read {path}: give a .jsonl or .csv file (got '{path.suffix or 'no suffix'}')."
        )
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            if path.suffix.lower() == ".jsonl":
                return list(iter_text_records(fh, path, text_field))
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise DataError(
                    f"{path} has no column '{text_field}' (columns: "
                    f"{', '.join(reader.fieldnames or []) or 'none'}). Name it with --text-field."
                )
            return [dict(row) for row in reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not valid CSV ({exc}).") from None


def _min_samples(names: list[str], options: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {n: get_detector(n, **options.get(n, {})).min_samples for n in names}


def drift_report(
    reference: str | Path,
    current: str | Path,
    output: str | Path = "drift_report.html",
    text_field: str = "text",
    label_field: str = "label",
    detectors: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    max_examples: int = 1000,
    verified: RunVerification | None = None,
) -> dict[str, Any]:
    """Compare ``current`` texts with the reference run; write ``output`` (HTML) and its ``.json`` twin.

    Args:
        verified: the reference run's verification (``lmforge.guard.trust_run``), which the model
            and data read must still match; None reads the run unverified.

    Returns:
        The JSON document: verdict, the detectors that flagged drift, every result.

    Raises:
        IntegrityError: with ``verified``, a file of the reference changed since it was verified.
        RunDirError: the reference run lacks prepared data or a model.
        DataError: the current file is unreadable, empty, or smaller than the detectors need
            (nothing is written then).
    """
    from lmforge.monitor._reference import fit_reference

    run = RunDir(reference)
    hint = "Give a run directory trained with `lmforge run`."
    run.require("data/train.jsonl", hint=hint)
    run.require(MODEL, hint=hint)
    records = read_current(current, text_field)
    names = detectors if detectors is not None else available_detectors()
    options = options or {}
    needs = _min_samples(names, options)
    if not records:
        raise DataError(f"{current} holds no texts; there is nothing to compare with the reference.")
    if len(records) < max(needs.values()):
        detail = ", ".join(f"{n} {k}" for n, k in sorted(needs.items()))
        raise DataError(
            f"{current} holds {len(records)} texts, too few for a drift verdict: the detectors need at "
            f"least {max(needs.values())} ({detail}). No report was written."
        )
    predictor = load_predictor(run.root, verified=verified)
    state = fit_reference(run.root, names, options, max_examples, predictor=predictor, verified=verified)
    texts = [str(r[text_field]) for r in records]
    proba = np.asarray(predictor.predict_proba(texts))
    true = [r.get(label_field) for r in records]
    labels = (
        [str(t) for t in true] if all(isinstance(t, str) and t in predictor.labels for t in true) else None
    )
    data = DriftData(texts, proba, list(predictor.labels), labels)
    results = state.score(data)
    drifted = [r.name for r in results if r.drift]
    doc = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reference": str(run.root),
        "current": str(current),
        "n_current": len(records),
        "verdict": "drift" if drifted else "no drift",
        "drifted": drifted,
        "no_verdict": [r.name for r in results if r.drift is None],
        "accuracy": float(np.mean(proba.argmax(axis=1) == [predictor.labels.index(t) for t in labels]))
        if labels
        else None,
        "results": [r.to_dict() for r in results],
        "reference_meta": {k: v for k, v in state.meta.items() if k != "fingerprint"},
    }
    output = Path(output)
    atomic_write_text(output, _render(doc, state, data, results))
    atomic_write_json(output.with_suffix(".json"), doc)
    doc["html"], doc["json"] = str(output), str(output.with_suffix(".json"))
    return doc


def _plots(state: Any, data: DriftData) -> list[tuple[str, str]]:
    plots = []
    det = state.detectors
    classes = list(data.classes)
    if "prediction-psi" in det or "prediction-chi2" in det:
        counts = (det.get("prediction-psi") or det["prediction-chi2"]).counts_
        cur = np.bincount(data.predicted, minlength=len(classes))
        plots.append(
            (
                "Predicted-label mix",
                bar_chart(
                    "label-mix",
                    "Share of each predicted label",
                    classes,
                    [
                        ("reference", list(counts / max(counts.sum(), 1))),
                        ("current", list(cur / max(cur.sum(), 1))),
                    ],
                    "share",
                ),
            )
        )
    if "confidence-ks" in det:
        plots.append(
            (
                "Confidence",
                histogram_chart(
                    "confidence",
                    "Confidence of the predicted label",
                    [
                        ("reference", det["confidence-ks"].confidence_.tolist()),
                        ("current", data.confidence.tolist()),
                    ],
                    "confidence",
                ),
            )
        )
    if "text-length-ks" in det:
        cur_len = [len(t) for t in data.texts]
        ref_len = det["text-length-ks"].lengths_.tolist()
        cap = float(np.percentile(ref_len + cur_len, 99))  # one huge text must not squash the plot
        plots.append(
            (
                "Text length",
                histogram_chart(
                    "text-length",
                    "Text length in characters (99th pct. cap)",
                    [
                        ("reference", [min(v, cap) for v in ref_len]),
                        ("current", [min(v, cap) for v in cur_len]),
                    ],
                    "characters",
                ),
            )
        )
    return plots


def _render(doc: dict[str, Any], state: Any, data: DriftData, results: list[DriftResult]) -> str:
    rows = "".join(
        f'<tr data-detector="{escape(r.name)}"><td>{escape(r.name)}</td><td class="'
        f'{"drift" if r.drift else "nodrift" if r.drift is False else "none"}">'
        f"{'drift' if r.drift else 'no drift' if r.drift is False else 'no verdict'}</td>"
        f"<td>{'–' if r.statistic is None else f'{r.statistic:.4g}'}</td>"
        f"<td>{'–' if r.p_value is None else f'{r.p_value:.2g}'}</td><td>{r.threshold:.4g}</td>"
        f"<td>{escape(r.reason)}</td></tr>"
        for r in results
    )
    plots = "".join(f'<div class="card"><h2>{escape(t)}</h2>{svg}</div>' for t, svg in _plots(state, data))
    verdict = doc["verdict"]
    color = "#dc2626" if verdict == "drift" else "#16a34a"
    accuracy = (
        ""
        if doc["accuracy"] is None
        else f"<p>Measured accuracy on the current labels: {doc['accuracy']:.1%}</p>"
    )
    skipped = "".join(f"<li>{escape(n)}: {escape(why)}</li>" for n, why in sorted(state.skipped.items()))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lmforge drift report</title>'
        f"<style>{PAGE_CSS} .verdict{{font-size:22px;font-weight:700;color:{color}}}</style></head><body>"
        f"<header><h1>lmforge drift report</h1><span>{escape(doc['created'])}</span></header><main>"
        f'<div class="card"><p class="verdict" id="verdict">{escape(verdict)}'
        f"{': ' + escape(', '.join(doc['drifted'])) if doc['drifted'] else ''}</p>"
        f"<p>Reference: <code>{escape(doc['reference'])}</code> ({state.meta.get('n_texts', 0)} texts, "
        f"{state.meta.get('n_outputs', 0)} held-out predictions). Current: <code>{escape(doc['current'])}</code> "
        f"({doc['n_current']} texts).</p>{accuracy}"
        f'<table id="results"><tr><th>detector</th><th>verdict</th><th>statistic</th><th>p</th><th>threshold</th>'
        f"<th>why</th></tr>{rows}</table>"
        f"{'<p>Detectors without a reference:</p><ul>' + skipped + '</ul>' if skipped else ''}</div>"
        f'<section class="grid">{plots}</section></main></body></html>'
    )
