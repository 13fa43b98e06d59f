"""Offline catalog of packaged models and datasets, found through importlib metadata (no hub)."""

from lmforge.catalog._datasets import DATASETS, DatasetEntry, load_dataset
from lmforge.catalog._kind import CAUSAL_MODEL_TYPES, ModelKind, model_kind
from lmforge.catalog._models import MODELS, SCRIPT_DEFAULTS, ModelEntry, resolve_model

__all__ = [
    "CAUSAL_MODEL_TYPES",
    "DATASETS",
    "MODELS",
    "SCRIPT_DEFAULTS",
    "DatasetEntry",
    "ModelEntry",
    "ModelKind",
    "load_dataset",
    "model_kind",
    "resolve_model",
]
