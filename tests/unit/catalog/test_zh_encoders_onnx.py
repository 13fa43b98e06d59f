"""The Chinese-capable encoders along the path: fine-tune, ONNX export, int8, ONNX Runtime predictor.

m3e-small is the packaged model (WordPiece, ``[UNK]``); the XLM-R side (SentencePiece unigram,
``<unk>`` and ``<pad>`` = 1) runs on the tiny E5S1 model converted by the same code as
multilingual-e5-small, so the test stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests._runs import fast_options
from tests._tiny_e5 import TinyE5

from lmforge.catalog import resolve_model
from lmforge.catalog._cache import converted
from lmforge.catalog._e5 import convert_e5
from lmforge.predict import OnnxPredictor, load_predictor
from lmforge.rundir import RunDir

pytestmark = pytest.mark.slow

POS = ["这家餐厅的菜很好吃，服务也很好", "质量很好，物流很快，非常满意", "好吃，下次还来", "性价比很高，推荐购买"]
NEG = ["物流太慢了，包装也破了，差评！", "难吃，服务态度很差", "质量太差，用了一天就坏了", "再也不会买了，失望"]


def _prepared(root: Path) -> RunDir:
    run = RunDir(root)
    run.data_dir.mkdir(parents=True)
    rows = [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]
    for split, part in (("train", rows * 3), ("val", rows[::2]), ("test", rows)):
        run.split_path(split).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                         encoding="utf-8")
    run.labels_path.write_text(json.dumps({"labels": ["neg", "pos"]}), encoding="utf-8")
    return run


@pytest.fixture(params=["m3e-small", "tiny-e5"])
def base_model(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "m3e-small":
        return request.param
    tiny: TinyE5 = request.getfixturevalue("tiny_e5")
    sources = [tiny.model, tiny.tokenizer]
    return str(converted("tiny-e5-onnx", sources, "1", lambda folder: convert_e5(folder, sources)))


def test_fine_tuned_then_exported_to_onnx_and_int8(base_model: str, tmp_path: Path, _home: Path) -> None:
    from lmforge.compress import compress
    from lmforge.config import spec_from_dict
    from lmforge.train import train

    run = _prepared(tmp_path / "run")
    spec = spec_from_dict({"model": {"name": base_model, "max_length": 32},
                           "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 2e-4, "warmup_ratio": 0.0}})
    train(spec, run, progress=False)
    saved = json.loads((run.model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    base = resolve_model(base_model)
    assert saved["unk_token"] == json.loads((base / "tokenizer_config.json").read_text(encoding="utf-8"))["unk_token"]
    compress(run, fast_options(only=("onnx-fp32", "onnx-int8-dynamic")))

    texts = POS + NEG + ["一般"]  # lengths differ: every batch is padded
    reference = load_predictor(run, "fp32").predict_proba(texts)
    fp32, int8 = load_predictor(run, "onnx-fp32"), load_predictor(run, "onnx-int8-dynamic")
    assert isinstance(fp32, OnnxPredictor) and isinstance(int8, OnnxPredictor)
    np.testing.assert_allclose(fp32.predict_proba(texts), reference, atol=1e-4)
    np.testing.assert_allclose(int8.predict_proba(texts), reference, atol=0.05)
    # one text alone and in a padded batch: the ONNX tokenizer's padding does not change it
    np.testing.assert_allclose(fp32.predict_proba(texts[-1:]), fp32.predict_proba(texts)[-1:], atol=1e-5)
