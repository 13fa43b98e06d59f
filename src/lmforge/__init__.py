"""lmforge: one spec file and one CLI from raw labeled text to a fine-tuned, evaluated model.

``import lmforge`` needs only the core dependencies (PyYAML, NumPy); every stage imports its
heavy dependencies (pandas, torch, transformers...) when it runs.
"""

from __future__ import annotations

from lmforge.config import Spec, load_spec
from lmforge.errors import (
    ConfigError,
    DataError,
    LmforgeError,
    MissingExtraError,
    NotFittedError,
    RunDirError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "LmforgeError",
    "MissingExtraError",
    "NotFittedError",
    "RunDirError",
    "Spec",
    "__version__",
    "load_spec",
]
