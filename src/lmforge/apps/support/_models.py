"""The bot's two uses of its intent run: logits from the classifier variant, embeddings from an encoder.

Both come from one pass of the classifier variant (``encode``: a torch model, or an ONNX graph
with the ``pooled`` output). Only an ONNX graph exported before that output existed has the
logits alone; then the embeddings (embedding detectors, FAQ retrieval) come from the run's own
``fp32`` model, a second pass per turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmforge.errors import RunDirError
from lmforge.guard import RunVerification
from lmforge.predict import (
    OnnxPredictor,
    Predictor,
    TorchPredictor,
    load_predictor,
    resolve_variant,
    unit_rows,
)
from lmforge.rundir import FP32, RunDir

__all__ = ["Models", "load_models"]


@dataclass
class Models:
    """The loaded classifier and, when needed, the encoder the embeddings come from."""

    classifier: Predictor
    classifier_variant: str
    embedder: TorchPredictor | OnnxPredictor | None
    """The encoder of the embeddings when it is not the classifier (None: the classifier pools)."""
    embedder_variant: str

    def encode(self, texts: Sequence[str], *, need_embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) logits and, if asked, (N, H) mean-pooled embeddings (unnormalized)."""
        texts = list(texts)
        classifier: Any = self.classifier
        if self.embedder_variant == self.classifier_variant:  # one pass gives both
            if not need_embeddings:
                return np.asarray(classifier.logits(texts)), None
            logits, pooled = classifier.encode(texts)
            return logits, pooled
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


def _pools(predictor: Predictor) -> bool:
    """Whether ``predictor.encode`` gives the pooled embeddings with the logits."""
    return isinstance(predictor, TorchPredictor) or (isinstance(predictor, OnnxPredictor) and predictor.pools)


def load_models(run: RunDir, variant: str | None, *, embeddings: bool,
                verified: RunVerification | None = None, embedder: str | None = None) -> Models:
    """The classifier (``variant``, None: the run's selected one) and an encoder when ``embeddings``.

    ``embedder``: the variant the embeddings came from when the bot was calibrated (its manifest's
    ``embedder_variant``); a bot keeps reading them from there, so its detectors and FAQ index
    see the embeddings they were fitted on. None: the classifier when it pools, else ``fp32``.
    """
    name, _ = resolve_variant(run, variant)
    classifier = load_predictor(run, name, verified=verified)
    source = embedder or (name if _pools(classifier) else FP32)
    if source == name and not _pools(classifier):
        raise RunDirError(f"variant {name} of {run.root} gives no embeddings (its graph outputs only logits), yet "
                          "the bot was calibrated on them; run `lmforge bot build` (or calibrate) again.")
    loaded: TorchPredictor | OnnxPredictor | None = None
    if embeddings and source != name:
        predictor = load_predictor(run, source, verified=verified)
        if not (_pools(predictor) and isinstance(predictor, TorchPredictor | OnnxPredictor)):
            raise RunDirError(f"variant {source} of {run.root} gives no embeddings (its graph outputs only logits); "
                              "run `lmforge bot build` (or calibrate) again.")
        loaded = predictor
    return Models(classifier, name, loaded, source)
