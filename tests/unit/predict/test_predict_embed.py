"""``logits``, ``encode`` and ``embed``: what the support bot's out-of-scope scores and retrieval read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmforge.predict import TorchPredictor, load_predictor, softmax, unit_rows
from lmforge.rundir import RunDir

TEXTS = ["great flight, thank you", "lost my bag again", "ok", "the crew was rude and the seat broken, never again"]


def test_torch_encode_gives_the_logits_and_the_mean_pooled_states(trained_full: Path) -> None:
    import torch

    predictor = load_predictor(trained_full, "fp32")
    assert isinstance(predictor, TorchPredictor)
    logits, pooled = predictor.encode(TEXTS, batch_size=2)
    # other batches pad differently: equal up to float32 noise
    np.testing.assert_allclose(softmax(logits), predictor.predict_proba(TEXTS), atol=1e-5)
    np.testing.assert_array_equal(predictor.logits(TEXTS, batch_size=2), logits)
    with torch.inference_mode():  # the mean over real tokens, one text at a time (no padding at all)
        for i, text in enumerate(TEXTS):
            enc = predictor.tokenizer([text], truncation=True, max_length=predictor.max_length, return_tensors="pt")
            states = predictor.model.base_model(**enc).last_hidden_state[0]  # (T, H)
            np.testing.assert_allclose(pooled[i], states.mean(0).numpy(), atol=1e-5)
    emb = predictor.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, unit_rows(pooled), atol=1e-6)


def test_onnx_logits_match_its_probabilities_and_the_fp32_model(compressed_full: tuple[RunDir, dict]) -> None:
    run, _ = compressed_full
    onnx = load_predictor(run, "onnx-fp32")
    logits = onnx.logits(TEXTS, batch_size=3)  # type: ignore[attr-defined]
    assert logits.shape == (len(TEXTS), len(onnx.labels))
    np.testing.assert_allclose(softmax(logits), onnx.predict_proba(TEXTS, batch_size=3), atol=1e-6)
    torch_logits = load_predictor(run, "fp32").logits(TEXTS)  # type: ignore[attr-defined]
    np.testing.assert_allclose(logits, torch_logits, atol=1e-4)


def test_unit_rows_leaves_a_zero_row_at_zero() -> None:
    out = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32
