"""Imports every detector module shipped with lmforge so each registers itself."""

from lmforge.monitor import _detect_accuracy, _detect_embedding, _detect_outputs, _detect_text  # noqa: F401
