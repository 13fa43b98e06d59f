"""Where the bot's embeddings come from: one pass of the classifier variant when its graph pools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests._runs import copy_run, drop_pooled_output

from lmforge.apps.support._models import load_models
from lmforge.errors import RunDirError
from lmforge.predict import OnnxPredictor, TorchPredictor, load_predictor
from lmforge.rundir import RunDir

pytestmark = pytest.mark.slow

TEXTS = ["worst airline, lost my bag", "thank you, great crew"]


def test_an_onnx_classifier_that_pools_is_the_only_model_loaded(compressed_full: tuple[RunDir, dict]) -> None:
    run, _ = compressed_full
    models = load_models(run, "onnx-int8-dynamic", embeddings=True)
    assert isinstance(models.classifier, OnnxPredictor)
    assert models.embedder is None and models.embedder_variant == "onnx-int8-dynamic"
    logits, pooled = models.encode(TEXTS, need_embeddings=True)
    want_logits, want_pooled = models.classifier.encode(TEXTS)
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(pooled, want_pooled)
    assert models.encode(TEXTS, need_embeddings=False)[1] is None


def test_a_graph_with_logits_alone_reads_the_embeddings_from_fp32(compressed_full: tuple[RunDir, dict],
                                                                   tmp_path: Path) -> None:
    run = copy_run(compressed_full[0].root, tmp_path / "run")
    drop_pooled_output(run.root / "compressed" / "onnx-int8-dynamic")
    models = load_models(run, "onnx-int8-dynamic", embeddings=True)
    assert isinstance(models.embedder, TorchPredictor) and models.embedder_variant == "fp32"
    logits, pooled = models.encode(TEXTS, need_embeddings=True)
    np.testing.assert_allclose(logits, models.classifier.logits(TEXTS), atol=1e-6)
    np.testing.assert_allclose(pooled, load_predictor(run, "fp32").encode(TEXTS)[1], atol=1e-5)


def test_a_bot_calibrated_on_a_graph_that_no_longer_pools_is_refused(compressed_full: tuple[RunDir, dict],
                                                                      tmp_path: Path) -> None:
    run = copy_run(compressed_full[0].root, tmp_path / "run")
    drop_pooled_output(run.root / "compressed" / "onnx-int8-dynamic")
    with pytest.raises(RunDirError, match=r"gives no embeddings .* calibrated on them; run `lmforge bot build`"):
        load_models(run, "onnx-int8-dynamic", embeddings=True, embedder="onnx-int8-dynamic")


def test_a_bot_keeps_the_embedder_it_was_calibrated_on(compressed_full: tuple[RunDir, dict]) -> None:
    """A bot built before its graph pooled recorded fp32 as its embedder: it keeps reading fp32."""
    run, _ = compressed_full
    models = load_models(run, "onnx-int8-dynamic", embeddings=True, embedder="fp32")
    assert isinstance(models.embedder, TorchPredictor) and models.embedder_variant == "fp32"
    np.testing.assert_allclose(models.encode(TEXTS, need_embeddings=True)[1],
                               load_predictor(run, "fp32").encode(TEXTS)[1], atol=1e-5)
