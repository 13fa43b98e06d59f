"""Errors of the monitoring layer; each carries the machine-readable ``code`` the HTTP layer sends."""

from __future__ import annotations

from lmforge.errors import LmforgeError

__all__ = [
    "FeedbackConflictError",
    "FeedbackForbiddenError",
    "InvalidLabelError",
    "MonitorError",
    "UnknownPredictionError",
]


class MonitorError(LmforgeError):
    """A monitoring request the caller got wrong."""

    code = "monitor_error"


class UnknownPredictionError(MonitorError):
    """Feedback names a prediction id the store has never seen (HTTP 404)."""

    code = "unknown_prediction"


class InvalidLabelError(MonitorError, ValueError):
    """Feedback gives a label that is not one of the model's labels (HTTP 422)."""

    code = "invalid_label"


class FeedbackForbiddenError(MonitorError):
    """Feedback on a prediction another API key asked for (HTTP 403): only that key, or an admin, labels it."""

    code = "forbidden"


class FeedbackConflictError(MonitorError):
    """A prediction already has a different label (HTTP 409): it is final unless an admin overrides it."""

    code = "feedback_conflict"
