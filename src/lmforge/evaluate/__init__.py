"""The evaluate stage: test-split metrics, calibration, error analysis, report and model card.

``evaluate(spec, run)`` predicts the prepared test split with the trained model and writes
``eval/`` (metrics.json, confusion.png, calibration.png, errors.jsonl, report.html),
``MODEL_CARD.md`` and the headline metrics into the manifest. The metric functions are pure
NumPy and importable without torch (training uses :func:`macro_f1` for early stopping).
"""

from lmforge.evaluate._analysis import collect_errors, error_rate_by_length, weak_classes
from lmforge.evaluate._evaluate import Predictor, evaluate, load_labels, load_test_split
from lmforge.evaluate._metrics import compute_metrics, macro_f1, most_confused

__all__ = [
    "Predictor",
    "collect_errors",
    "compute_metrics",
    "error_rate_by_length",
    "evaluate",
    "load_labels",
    "load_test_split",
    "macro_f1",
    "most_confused",
    "weak_classes",
]
