"""Imports every detector module shipped with lmforge so each registers itself."""

import lmforge.monitor._detect_accuracy  # noqa: F401
import lmforge.monitor._detect_embedding  # noqa: F401
import lmforge.monitor._detect_outputs  # noqa: F401
import lmforge.monitor._detect_text  # noqa: F401
