"""The Predictor interface: backend dispatch, the selected variant, and an ONNX path without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import REPO, cli_env

from lmforge.errors import RunDirError
from lmforge.predict import Predictor, load_predictor, read_selected
from lmforge.rundir import RunDir, atomic_write_json

pytestmark = pytest.mark.slow


def test_fast_tokenizer_pads_per_batch_and_truncates(trained_full: Path) -> None:
    from lmforge.predict import FastTokenizer

    tok = FastTokenizer(trained_full / "model", max_length=8)
    enc = tok(["short", "a somewhat longer text about a delayed flight to Boston"])
    assert enc["input_ids"].shape == (2, 8)  # truncated to max_length, not the packaged fixed 128
    assert enc["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert enc["input_ids"][0, -1] == tok.pad_id == 0
    assert tok(["short", "tiny"])["input_ids"].shape == (2, 3)  # pads to the batch's own longest
    assert tok.lengths(["short", "a b c d e f g h i j k"]) == [3, 8]


def test_load_predictor_follows_the_selected_pointer(compressed_full: tuple[RunDir, dict]) -> None:
    run, summary = compressed_full
    default = load_predictor(run)
    assert isinstance(default, Predictor)
    assert read_selected(run)["variant"] == summary["selected"]
    onnx = load_predictor(run, "onnx-int8-dynamic")
    assert type(onnx).__name__ == "OnnxPredictor" and onnx.labels == ["negative", "positive"]
    torch_variant = load_predictor(run, "distilled")
    assert type(torch_variant).__name__ == "TorchPredictor"
    preds = onnx.predict(["worst airline, lost my bag", "thank you, great crew"], batch_size=2)
    assert [p["label"] for p in preds] == ["negative", "positive"]
    assert abs(sum(preds[0]["scores"].values()) - 1.0) < 1e-4


def test_unknown_variant_lists_what_exists(compressed_full: tuple[RunDir, dict]) -> None:
    run, _ = compressed_full
    with pytest.raises(RunDirError, match=r"no compressed variant 'int3'. Available: fp32, distilled, "):
        load_predictor(run, "int3")


def test_without_compress_the_fp32_model_is_used(trained_full: Path) -> None:
    predictor = load_predictor(trained_full)
    assert type(predictor).__name__ == "TorchPredictor"
    assert read_selected(trained_full) is None


def test_a_damaged_pointer_is_a_clear_error(compressed_full: tuple[RunDir, dict], tmp_path: Path) -> None:
    import shutil

    run, _ = compressed_full
    copy = tmp_path / "run"
    shutil.copytree(run.root, copy)
    (copy / "compressed" / "selected").write_text("onnx-fp32", encoding="utf-8")
    with pytest.raises(RunDirError, match="not valid JSON"):
        load_predictor(copy)
    atomic_write_json(copy / "compressed" / "selected", {"variant": "fp32", "path": "model"})
    assert type(load_predictor(copy)).__name__ == "TorchPredictor"


def test_onnx_predictor_runs_without_torch_or_transformers(compressed_full: tuple[RunDir, dict],
                                                           tmp_path: Path) -> None:
    run, _ = compressed_full
    code = textwrap.dedent(f"""
        import sys
        BLOCK = ("torch", "transformers", "peft", "accelerate", "pandas", "safetensors")

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCK:
                    raise ImportError(f"blocked for this test: {{name}}")
                return None

        sys.meta_path.insert(0, Blocker())
        from lmforge.predict import load_predictor
        p = load_predictor({str(run.root)!r}, "onnx-int8-dynamic")
        out = p.predict(["lost my bag", "great crew"], batch_size=2)
        print("LABELS", [o["label"] for o in out])
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCK))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=cli_env(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "LABELS ['negative', 'positive']" in proc.stdout
    assert "LOADED []" in proc.stdout


def test_predict_cli_uses_the_selected_variant_unless_told(compressed_full: tuple[RunDir, dict],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main

    run, _ = compressed_full
    base = ["predict", str(run.root), "--allow-unsigned"]  # built by the library, which does not sign
    assert main([*base, "--text", "lost my bag, terrible", "--variant", "onnx-fp32"]) == 0
    onnx = json.loads(capsys.readouterr().out)
    assert main([*base, "--text", "lost my bag, terrible", "--variant", "fp32"]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert onnx[0]["label"] == fp32[0]["label"]
    np.testing.assert_allclose(onnx[0]["score"], fp32[0]["score"], atol=1e-3)
    assert main([*base, "--text", "hi", "--variant", "nope"]) == 2
    assert "no compressed variant 'nope'" in capsys.readouterr().err


def test_torchscript_exporter_is_pinned(trained_full: Path, tmp_path: Path) -> None:
    """torch.onnx.export(dynamo=False) still exports (the dynamo default is slower here and needs onnxscript)."""
    import onnx
    import transformers

    from lmforge.compress._onnx import OPSET, export_onnx

    model = transformers.AutoModelForSequenceClassification.from_pretrained(trained_full / "model")
    names = export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    assert graph.producer_name == "pytorch"  # the TorchScript exporter; dynamo writes its own producer
    assert graph.opset_import[0].version == OPSET
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
    assert dims == [["batch", "sequence"]] * 3


def test_an_onnx_classifier_gives_the_pooled_states_from_the_same_pass(compressed_full: tuple[RunDir, dict]) -> None:
    """Every ONNX variant outputs logits and the mean-pooled last hidden states; fp32 ONNX matches torch."""
    run, _ = compressed_full
    texts = ["worst airline, lost my bag", "thank you, great crew", "ok"]
    ref_logits, ref_pooled = load_predictor(run, "fp32").encode(texts)
    for name in ("onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static"):
        onnx = load_predictor(run, name)
        assert onnx.pools, name
        logits, pooled = onnx.encode(texts)
        assert logits.shape == ref_logits.shape and pooled.shape == ref_pooled.shape == (3, 384)
        np.testing.assert_allclose(logits, onnx.logits(texts), atol=1e-6)  # one graph, one answer
        cos = (pooled * ref_pooled).sum(1) / np.linalg.norm(pooled, axis=1) / np.linalg.norm(ref_pooled, axis=1)
        if name == "onnx-fp32":  # the same model, fused
            np.testing.assert_allclose(pooled, ref_pooled, atol=1e-4 * float(np.abs(ref_pooled).max()))
            np.testing.assert_allclose(logits, ref_logits, atol=1e-3)
        if name == "onnx-int8-dynamic":  # measured 0.98-0.995 on the tiny run; static int8, calibrated on
            assert cos.min() > 0.95, (name, cos)  # 16 texts here, drifts further (0.86-0.97)


def test_an_onnx_graph_with_logits_alone_says_it_does_not_pool(compressed_full: tuple[RunDir, dict],
                                                               tmp_path: Path) -> None:
    from tests._runs import copy_run, drop_pooled_output

    run = copy_run(compressed_full[0].root, tmp_path / "run")
    before = load_predictor(run, "onnx-int8-dynamic").logits(["thank you, great crew"])
    drop_pooled_output(run.root / "compressed" / "onnx-int8-dynamic")
    onnx = load_predictor(run, "onnx-int8-dynamic")
    assert not onnx.pools
    np.testing.assert_allclose(onnx.logits(["thank you, great crew"]), before, atol=1e-6)
    with pytest.raises(RunDirError, match=r"outputs only logits .* run `lmforge compress` on the run again"):
        onnx.encode(["thank you, great crew"])
