"""Offline catalog of packaged models and datasets, found through importlib metadata (no hub)."""

from lmforge.catalog._datasets import DATASETS, DatasetEntry, load_dataset
from lmforge.catalog._models import MODELS, ModelEntry, resolve_model

__all__ = ["DATASETS", "MODELS", "DatasetEntry", "ModelEntry", "load_dataset", "resolve_model"]
