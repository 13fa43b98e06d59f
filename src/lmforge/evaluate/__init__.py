"""The evaluate stage: test-split metrics, calibration, error analysis, report and model card.

``evaluate(spec, run)`` predicts the prepared test split with the trained model and writes
``eval/`` (metrics.json, confusion.png, calibration.png, errors.jsonl, report.html),
``MODEL_CARD.md`` and the headline metrics into the manifest. The metric functions are pure
NumPy and importable without torch (:func:`macro_f1` is :func:`lmforge.metrics.macro_f1`,
which training also uses for early stopping).

Generative runs (``task: generate``) have their own stage, :func:`evaluate_generation`:
ROUGE-L, chrF, BLEU-4, exact match, perplexity, stop rate and PII of the generated answers,
against the base model and a retrieval baseline (:class:`NearestPrompt`). Its metric
functions are pure Python and match ``rouge-score`` and ``sacrebleu``.

The reports about a trained model that a reviewer reads live here too:
:func:`fairness_report` / :func:`fairness_for_run` (metrics per slice, disparity ratios)
and :func:`compliance_report` (card, lineage, PII scan, fairness, metrics, signature);
:func:`compare_runs` puts runs side by side (``lmforge runs compare``).
"""

from lmforge.evaluate._analysis import collect_errors, error_rate_by_length, weak_classes
from lmforge.evaluate._compare import (
    RunComparison,
    compare_runs,
    render_comparison_html,
    render_comparison_text,
)
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
from lmforge.evaluate._gen_data import GenExample, read_generation_split
from lmforge.evaluate._gen_evaluate import BLOCK_KEYS, evaluate_generation, is_generative_run, score_answers
from lmforge.evaluate._gen_metrics import (
    bleu,
    chrf,
    exact_match,
    mean_length,
    perplexity,
    rouge_l,
    rouge_l_f,
    rouge_tokens,
    stop_rate,
)
from lmforge.evaluate._metrics import compute_metrics, macro_f1, most_confused
from lmforge.evaluate._report import CSS, escape, html_table
from lmforge.evaluate._retrieval import NearestPrompt

__all__ = [
    "BLOCK_KEYS",
    "CSS",
    "GenExample",
    "NearestPrompt",
    "RunComparison",
    "bleu",
    "chrf",
    "collect_errors",
    "compare_runs",
    "compliance_report",
    "compute_metrics",
    "error_rate_by_length",
    "escape",
    "evaluate",
    "evaluate_generation",
    "exact_match",
    "fairness_for_run",
    "fairness_report",
    "groups_from_field",
    "groups_from_handles",
    "groups_from_keywords",
    "html_table",
    "is_generative_run",
    "load_labels",
    "load_test_split",
    "macro_f1",
    "mean_length",
    "most_confused",
    "perplexity",
    "read_generation_split",
    "render_comparison_html",
    "render_comparison_text",
    "render_fairness_markdown",
    "rouge_l",
    "rouge_l_f",
    "rouge_tokens",
    "score_answers",
    "stop_rate",
    "weak_classes",
]
