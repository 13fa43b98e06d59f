"""The drift reference of a run: every detector fitted on the run's data and model, saved as JSON.

Text detectors are fitted on a sample of the train+val texts; output detectors on the
model's predictions for the val split (held out from training, so its confidences look
like live traffic's). Fitting runs the model over the sample once; :meth:`ReferenceState.save`
keeps the result so a server restart does not redo it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import DataError, LmforgeError
from lmforge.guard import RunVerification
from lmforge.monitor._drift import DriftData, DriftDetector, DriftResult
from lmforge.monitor._registry import available_detectors, detector_from_json, get_detector
from lmforge.predict import load_predictor
from lmforge.rundir import RunDir, atomic_write_json, read_split, sha256_file

__all__ = ["ReferenceState", "fit_detectors", "fit_reference", "reference_fingerprint"]

log = logging.getLogger(__name__)
FORMAT = "lmforge.monitor.reference/1"


@dataclass
class ReferenceState:
    """Fitted detectors, and for each detector that could not be fitted the reason."""

    detectors: dict[str, DriftDetector]
    skipped: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted([*self.detectors, *self.skipped])

    def score(self, current: DriftData) -> list[DriftResult]:
        """Every detector's verdict on ``current`` (name order); a failing detector gives no verdict."""
        results = []
        for name in self.names:
            if name in self.skipped:
                results.append(get_detector(name).no_verdict(self.skipped[name]))
                continue
            try:
                results.append(self.detectors[name].score(current))
            except LmforgeError as exc:
                results.append(self.detectors[name].no_verdict(str(exc)))
        return results

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "classes": self.classes,
            "meta": self.meta,
            "skipped": self.skipped,
            "detectors": {n: d.to_json() for n, d in sorted(self.detectors.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReferenceState:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"Not a drift reference file (expected format {FORMAT!r}).")
        return cls(
            detectors={n: detector_from_json(d) for n, d in data.get("detectors", {}).items()},
            skipped=dict(data.get("skipped") or {}),
            classes=list(data.get("classes") or []),
            meta=dict(data.get("meta") or {}),
        )

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ReferenceState:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"Cannot read the drift reference {path}: {exc}") from None
        return cls.from_json(data)


def fit_detectors(
    texts: DriftData,
    outputs: DriftData | None,
    names: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> ReferenceState:
    """Fit each named detector (default: :func:`available_detectors`) on the data it needs.

    A detector whose reference is too small (or lacks outputs) is recorded in ``skipped``
    with the reason, so the others still run.
    """
    options = options or {}
    fitted: dict[str, DriftDetector] = {}
    skipped: dict[str, str] = {}
    for name in names if names is not None else available_detectors():
        detector = get_detector(name, **options.get(name, {}))
        data = texts if detector.needs == "texts" else outputs
        if data is None:
            skipped[name] = f"{name} needs model outputs on held-out reference data; none were given."
            continue
        try:
            fitted[name] = detector.fit(data)
        except DataError as exc:
            skipped[name] = str(exc)
    classes = list(outputs.classes) if outputs is not None else []
    return ReferenceState(fitted, skipped, classes, {"n_texts": len(texts), "n_outputs": len(outputs or [])})


def _sample(records: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    if len(records) <= k:
        return records
    idx = np.sort(np.random.default_rng(seed).choice(len(records), k, replace=False))
    return [records[i] for i in idx]


def reference_fingerprint(
    run: str | Path, names: Sequence[str] | None, options: dict[str, Any] | None, max_examples: int
) -> str:
    """sha256 of what a fitted reference depends on: data splits, model files, detectors, options."""
    root = RunDir(run)
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [sorted(names) if names is not None else available_detectors(), options or {}, max_examples],
            sort_keys=True,
            default=str,
        ).encode()
    )
    files = [
        root.split_path("train"),
        root.split_path("val"),
        root.labels_path,
        root.selected_path,
    ]
    files += sorted(p for p in root.model_dir.glob("*") if p.is_file())
    for path in files:
        if path.is_file():
            h.update(path.relative_to(root.root).as_posix().encode())
            h.update(sha256_file(path).encode())
    return h.hexdigest()


def fit_reference(
    run: str | Path,
    names: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    max_examples: int = 1000,
    seed: int = 0,
    predictor: Any = None,
    verified: RunVerification | None = None,
) -> ReferenceState:
    """Fit the drift reference of a trained run.

    Fitting decides no trust: a caller that verified the run (``lmforge.guard.trust_run``) passes
    the verification, and the data and model read here must still be what it hashed.

    Args:
        run: run directory with prepared data and a model.
        names: detectors to fit (default: every available one).
        options: parameters per detector.
        max_examples: most texts of train+val (text detectors) and of val (output detectors).
        seed: seed of the samples.
        predictor: the model to run on the val split (default: ``load_predictor(run)``).
        verified: the run's verification; checked after the data and model were read.

    Raises:
        RunDirError: the run has no prepared data or no model.
        IntegrityError: with ``verified``, a file changed since the run was verified.
    """
    root = RunDir(run)
    root.require("data/train.jsonl", hint="Give a run directory made by `lmforge run` or `lmforge prepare`.")
    train, val = read_split(root, "train"), read_split(root, "val")
    text_rows = _sample(train + val, max_examples, seed)
    val_rows = _sample(val, max_examples, seed + 1)
    output_names = [
        n
        for n in (names if names is not None else available_detectors())
        if get_detector(n).needs == "outputs"
    ]
    outputs = None
    if output_names and val_rows:
        if predictor is None:
            predictor = load_predictor(root.root, verified=verified)
        texts = [r["text"] for r in val_rows]
        outputs = DriftData(
            texts,
            np.asarray(predictor.predict_proba(texts)),
            list(predictor.labels),
            [r["label"] for r in val_rows],
        )
    state = fit_detectors(DriftData([r["text"] for r in text_rows]), outputs, names, options)
    if verified is not None:
        verified.check_unchanged()  # the splits read above are the verified ones
    state.meta.update(
        run=str(root.root.resolve()),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        fingerprint=reference_fingerprint(root.root, names, options, max_examples),
    )
    log.info(
        "drift reference of %s: fitted %s; skipped %s", root.root, sorted(state.detectors), state.skipped
    )
    return state
