"""The evaluate stage: test-split metrics, calibration, error analysis, report and model card.

``evaluate(spec, run)`` predicts the prepared test split with the trained model and writes
``eval/`` (metrics.json, confusion.png, calibration.png, errors.jsonl, report.html),
``MODEL_CARD.md`` and the headline metrics into the manifest. The metric functions are pure
NumPy and importable without torch (:func:`macro_f1` is :func:`lmforge.metrics.macro_f1`,
which training also uses for early stopping).

The reports about a trained model that a reviewer reads live here too:
:func:`fairness_report` / :func:`fairness_for_run` (metrics per slice, disparity ratios)
and :func:`compliance_report` (card, lineage, PII scan, fairness, metrics, signature).
"""

from lmforge.evaluate._analysis import collect_errors, error_rate_by_length, weak_classes
from lmforge.evaluate._compliance import compliance_report
from lmforge.evaluate._evaluate import evaluate, load_labels, load_test_split
from lmforge.evaluate._fairness import (
    fairness_for_run,
    fairness_report,
    groups_from_field,
    groups_from_handles,
    groups_from_keywords,
    render_fairness_markdown,
)
from lmforge.evaluate._metrics import compute_metrics, macro_f1, most_confused

__all__ = [
    "collect_errors",
    "compliance_report",
    "compute_metrics",
    "error_rate_by_length",
    "evaluate",
    "fairness_for_run",
    "fairness_report",
    "groups_from_field",
    "groups_from_handles",
    "groups_from_keywords",
    "load_labels",
    "load_test_split",
    "macro_f1",
    "most_confused",
    "render_fairness_markdown",
    "weak_classes",
]
