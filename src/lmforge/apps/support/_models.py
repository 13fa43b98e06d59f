"""The bot's two uses of its intent run: logits from the classifier variant, embeddings from an encoder.

An ONNX variant's graph outputs only logits, so when the selected variant is ONNX the
embeddings (Mahalanobis score, FAQ retrieval) come from the run's own ``fp32`` model; a torch
predictor gives both from one forward pass (``TorchPredictor.encode``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmforge.guard import RunVerification
from lmforge.predict import Predictor, TorchPredictor, load_predictor, resolve_variant, unit_rows
from lmforge.rundir import FP32, RunDir

__all__ = ["Models", "load_models"]


@dataclass
class Models:
    """The loaded classifier and, when needed, the encoder the embeddings come from."""

    classifier: Predictor
    classifier_variant: str
    embedder: TorchPredictor | None
    embedder_variant: str | None

    def encode(self, texts: Sequence[str], *, need_embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) logits and, if asked, (N, H) mean-pooled embeddings (unnormalized)."""
        texts = list(texts)
        if isinstance(self.classifier, TorchPredictor):
            logits, pooled = self.classifier.encode(texts)
            return logits, pooled if need_embeddings else None
        classifier: Any = self.classifier
        logits = np.asarray(classifier.logits(texts))
        if not need_embeddings:
            return logits, None
        if self.embedder is None:
            raise RuntimeError("these models were loaded without an encoder")  # a bug: load_models decides
        return logits, self.embedder.encode(texts)[1]

    def embed_raw(self, texts: Sequence[str]) -> np.ndarray:
        """(N, H) mean-pooled embeddings, unnormalized (what the Mahalanobis detector is fitted on)."""
        pooled = self.encode(texts, need_embeddings=True)[1]
        if pooled is None:  # encode always returns them when asked; this keeps the type honest
            raise RuntimeError("no embeddings were computed")
        return pooled

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, H) unit-length embeddings (FAQ questions and the customer's question)."""
        return unit_rows(self.embed_raw(texts))


def load_models(run: RunDir, variant: str | None, *, embeddings: bool,
                verified: RunVerification | None = None) -> Models:
    """The classifier (``variant``, None: the run's selected one) and an encoder when ``embeddings``."""
    name, _ = resolve_variant(run, variant)
    classifier = load_predictor(run, name, verified=verified)
    embedder: TorchPredictor | None = None
    embedder_variant = None
    if isinstance(classifier, TorchPredictor):
        embedder_variant = name
    elif embeddings:
        loaded = load_predictor(run, FP32, verified=verified)
        if not isinstance(loaded, TorchPredictor):  # fp32 is always the torch backend
            raise RuntimeError(f"the fp32 model of {run.root} did not load as a torch predictor")
        embedder, embedder_variant = loaded, FP32
    return Models(classifier, name, embedder, embedder_variant)
