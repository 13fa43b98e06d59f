"""monitor: what happens to a model after it is served.

- :class:`Monitor`: prediction store (SQLite/PostgreSQL, written off the request path),
  feedback and live accuracy / macro-F1, drift checks, alert rules (log, webhook), a
  Prometheus collector, a FastAPI router (``/v1/feedback``, ``/v1/monitor/summary``,
  ``/dashboard``).
- Drift detectors (scikit-learn style, registry :func:`register_detector`): predicted-label
  mix (PSI, chi-square), confidence and text length (KS), out-of-vocabulary rate, embedding
  domain classifier, label-free accuracy estimate. :func:`fit_reference` fits them on a run.
- :func:`drift_report`: the offline HTML + JSON report behind ``lmforge monitor report``.
- Active learning: :func:`sample_for_labelling` ranks served, unlabelled predictions by a strategy
  (:data:`SAMPLING_STRATEGIES`: uncertainty, margin, entropy, diverse = k-center among the
  uncertain) and :func:`import_labels` records the labels filled in as feedback
  (``lmforge monitor sample``, ``lmforge label import``), on a store from :func:`open_store`.
- :func:`roc_auc`: the area under the ROC curve (Mann-Whitney), which the drift checks and the
  support bot's out-of-scope evaluation share.

Importing this package needs NumPy only; SQLAlchemy, FastAPI, prometheus-client (the
``serve`` extra) and torch (embedding drift) load when used.
"""

from lmforge.monitor._alerts import WebhookNotifier
from lmforge.monitor._drift import DriftData, DriftDetector, DriftResult
from lmforge.monitor._errors import (
    FeedbackConflictError,
    FeedbackForbiddenError,
    InvalidLabelError,
    MonitorError,
    UnknownPredictionError,
)
from lmforge.monitor._live import classification_metrics
from lmforge.monitor._monitor import Monitor
from lmforge.monitor._records import PredictionRecord, new_prediction_id
from lmforge.monitor._reference import ReferenceState, fit_detectors, fit_reference
from lmforge.monitor._registry import (
    DETECTORS,
    available_detectors,
    detector_from_json,
    detector_names,
    get_detector,
    register_detector,
)
from lmforge.monitor._report import drift_report, read_current
from lmforge.monitor._sampling import (
    SAMPLING_STRATEGIES,
    LabelImport,
    acquisition_scores,
    import_labels,
    k_center,
    open_store,
    read_label_file,
    reveal_texts,
    sample_for_labelling,
    store_url,
)
from lmforge.monitor._settings import ALERT_METRICS, TEXT_POLICIES, AlertRule, MonitorSettings
from lmforge.monitor._stats import roc_auc

__all__ = [
    "ALERT_METRICS",
    "DETECTORS",
    "SAMPLING_STRATEGIES",
    "TEXT_POLICIES",
    "AlertRule",
    "DriftData",
    "DriftDetector",
    "DriftResult",
    "FeedbackConflictError",
    "FeedbackForbiddenError",
    "InvalidLabelError",
    "LabelImport",
    "Monitor",
    "MonitorError",
    "MonitorSettings",
    "PredictionRecord",
    "ReferenceState",
    "UnknownPredictionError",
    "WebhookNotifier",
    "acquisition_scores",
    "available_detectors",
    "classification_metrics",
    "detector_from_json",
    "detector_names",
    "drift_report",
    "fit_detectors",
    "fit_reference",
    "get_detector",
    "import_labels",
    "k_center",
    "new_prediction_id",
    "open_store",
    "read_current",
    "read_label_file",
    "register_detector",
    "reveal_texts",
    "roc_auc",
    "sample_for_labelling",
    "store_url",
]
