"""Fine-tuning on the Hugging Face Trainer (+ peft), method registry, and the torch predictor.

Importing this package is cheap; torch and transformers load when a function runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.train._hardware import fast_bf16, resolve_precision
from lmforge.train._methods import METHODS, Method, get_method, register_method

if TYPE_CHECKING:
    from lmforge.train._predict import TorchPredictor

__all__ = [
    "METHODS",
    "Method",
    "TorchPredictor",
    "fast_bf16",
    "get_method",
    "load_predictor",
    "register_method",
    "resolve_precision",
    "train",
]


def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`lmforge.train._train.train`."""
    from lmforge.train._train import train as _train

    return _train(*args, **kwargs)


def load_predictor(*args: Any, **kwargs: Any) -> TorchPredictor:
    """See :func:`lmforge.train._predict.load_predictor`."""
    from lmforge.train._predict import load_predictor as _load

    return _load(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TorchPredictor":
        from lmforge.train._predict import TorchPredictor

        return TorchPredictor
    raise AttributeError(name)
