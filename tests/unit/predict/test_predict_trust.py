"""What is loaded is what was verified: variant names, symlinked variants, unlisted files, a file
swapped between verification and loading, weights that must not follow later writes, a LoRA base
model that changed since training."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.catalog import resolve_model
from lmforge.cli.__main__ import main
from lmforge.errors import ConfigError, RunDirError
from lmforge.guard import IntegrityError, trust_run
from lmforge.predict import (
    BASE_DIGEST,
    OnnxPredictor,
    available_variants,
    base_model_digest,
    load_predictor,
    resolve_variant,
)
from lmforge.rundir import RunDir, atomic_write_json

pytestmark = pytest.mark.slow

TEXTS = ["great flight, thank you", "lost my bag again, terrible"]


def _with_symlinked_variant(trained: Path, tmp_path: Path) -> RunDir:
    """A copy of the run whose compressed/evil is a symlink to a variant folder outside the run."""
    run = copy_run(trained, tmp_path / "run")
    outside = tmp_path / "outside"
    shutil.copytree(run.model_dir, outside)
    (outside / "variant.json").write_text('{"variant": "evil"}', encoding="utf-8")
    run.compressed_dir.mkdir()
    (run.compressed_dir / "evil").symlink_to(outside)
    return run


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ".hidden", "", "x\\y", "../../model", "a\0b"])
def test_malformed_variant_names_are_refused(trained_full: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="Variant name .* is not valid"):
        resolve_variant(trained_full, name)
    with pytest.raises(ConfigError):
        load_predictor(trained_full, name)


def test_a_selected_pointer_out_of_the_run_is_refused(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    run.compressed_dir.mkdir()
    atomic_write_json(run.selected_path, {"variant": "../../elsewhere"})
    with pytest.raises(RunDirError, match="points at '../../elsewhere', which is no variant"):
        resolve_variant(run)


def test_a_symlinked_variant_is_refused_everywhere(trained_full: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _with_symlinked_variant(trained_full, tmp_path)
    assert available_variants(run) == []
    with pytest.raises(RunDirError, match="compressed/evil is a symlink"):
        resolve_variant(run, "evil")
    with pytest.raises(IntegrityError, match="symlink: compressed/evil -> "):
        trust_run(run, allow_unsigned=True)
    assert main(["predict", str(run.root), "--variant", "evil", "--allow-unsigned", "--text", "hi"]) == 2
    assert "symlink: compressed/evil" in capsys.readouterr().err
    (run.compressed_dir / "evil").unlink()
    assert main(["predict", str(run.root), "--variant", "../outside", "--allow-unsigned", "--text", "hi"]) == 2
    assert "Variant name '../outside' is not valid" in capsys.readouterr().err


@pytest.mark.parametrize("plant", ["extra pytorch_model.bin", "changed tokenizer.json", "hidden file"])
def test_a_file_the_manifest_does_not_list_is_refused(trained_full: Path, tmp_path: Path, plant: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    if plant == "extra pytorch_model.bin":
        (run.model_dir / "pytorch_model.bin").write_bytes(b"\x80\x02N.")
        expected = "extra file: model/pytorch_model.bin"
    elif plant == "changed tokenizer.json":
        tok = json.loads((run.model_dir / "tokenizer.json").read_text(encoding="utf-8"))
        tok["added_tokens"] = []
        (run.model_dir / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
        expected = "tampered file: model/tokenizer.json"
    else:
        (run.model_dir / ".special_tokens_map.json").write_text("{}", encoding="utf-8")
        expected = "extra file: model/.special_tokens_map.json"
    assert main(["predict", str(run.root), "--allow-unsigned", "--text", "hi"]) == 2
    assert expected in capsys.readouterr().err


def test_a_file_swapped_between_verification_and_loading_is_detected(
    trained_full: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lmforge.predict._torch as torch_backend

    run = copy_run(trained_full, tmp_path / "run")
    real_load = torch_backend.load

    def swap_then_load(folder: Path) -> object:
        # An attacker's file lands after verification hashed the folder (same bytes even: a new inode).
        tokenizer = folder / "tokenizer.json"
        (folder / "t.tmp").write_bytes(tokenizer.read_bytes())
        os.replace(folder / "t.tmp", tokenizer)
        return real_load(folder)

    monkeypatch.setattr(torch_backend, "load", swap_then_load)
    check = trust_run(run, allow_unsigned=True)
    with pytest.raises(IntegrityError, match=r"changed after it was verified(?s:.*)model/tokenizer.json"):
        load_predictor(run, verified=check)
    assert main(["predict", str(run.root), "--allow-unsigned", "--text", "hi"]) == 2
    assert "model/tokenizer.json (replaced" in capsys.readouterr().err


def test_loaded_weights_do_not_follow_later_writes_to_the_file(trained_full: Path, tmp_path: Path) -> None:
    """transformers maps safetensors files; the loader copies the weights, so a write after loading cannot
    change the running model."""
    run = copy_run(trained_full, tmp_path / "run")
    predictor = load_predictor(run, verified=trust_run(run, allow_unsigned=True))
    before = predictor.predict_proba(TEXTS)
    weights = run.model_dir / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # in place: the same inode a mapping would read
        fh.seek(size // 2)
        fh.write(b"\x00" * (size - size // 2))
    assert (predictor.predict_proba(TEXTS) == before).all()


def test_an_onnx_session_is_not_reopened_from_a_changed_file(compressed_full: tuple[RunDir, dict],
                                                            tmp_path: Path) -> None:
    run, _ = compressed_full
    folder = tmp_path / "onnx"
    shutil.copytree(run.variant_dir("onnx-int8-dynamic"), folder)
    predictor = OnnxPredictor(folder)
    predictor.set_threads(1, spinning=False)  # unchanged: fine
    shutil.copy(run.variant_dir("onnx-fp32") / "model.onnx", folder / "model.tmp")
    os.replace(folder / "model.tmp", folder / "model.onnx")
    with pytest.raises(IntegrityError, match="model.onnx changed since it was loaded"):
        predictor.set_threads(2, spinning=False)
    assert predictor.predict(TEXTS)[0]["label"] == "positive"  # the verified session keeps serving


def _lora_on_a_base_copy(trained_lora: Path, tmp_path: Path) -> tuple[RunDir, Path]:
    run = copy_run(trained_lora, tmp_path / "run")
    base = tmp_path / "base"
    base.mkdir()
    catalog = resolve_model(json.loads(run.model_meta_path.read_text(encoding="utf-8"))["base_model"])
    for name in ("config.json", "model.safetensors"):
        shutil.copy(catalog / name, base / name)
    meta = json.loads(run.model_meta_path.read_text(encoding="utf-8"))
    atomic_write_json(run.model_meta_path, {**meta, "base_model": str(base)})
    return run, base


def test_training_records_the_base_models_digest(trained_lora: Path) -> None:
    run = RunDir(trained_lora)
    meta = json.loads(run.model_meta_path.read_text(encoding="utf-8"))
    digest = base_model_digest(resolve_model("minilm-l6"))
    assert meta[BASE_DIGEST] == digest == run.read_manifest()["train"][BASE_DIGEST]


@pytest.mark.parametrize("change", ["config", "weights"])
def test_a_lora_base_that_changed_since_training_is_refused(trained_lora: Path, tmp_path: Path, change: str) -> None:
    run, base = _lora_on_a_base_copy(trained_lora, tmp_path)
    assert load_predictor(run).predict(TEXTS)[0]["label"] in ("negative", "positive")  # the same base: fine
    if change == "config":
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
        (base / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-5}), encoding="utf-8")
    else:
        with open(base / "model.safetensors", "r+b") as fh:
            fh.seek(-4, os.SEEK_END)
            fh.write(b"\x00\x00\x80\x3f")
    with pytest.raises(IntegrityError, match=f"The base model {base} of the lora adapter .* changed since training"):
        load_predictor(run)


def test_a_lora_run_without_a_recorded_digest_loads_with_a_warning(
    trained_lora: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run, _ = _lora_on_a_base_copy(trained_lora, tmp_path)
    meta = json.loads(run.model_meta_path.read_text(encoding="utf-8"))
    del meta[BASE_DIGEST]
    atomic_write_json(run.model_meta_path, meta)
    with caplog.at_level(logging.WARNING, logger="lmforge.predict._torch"):
        load_predictor(run)
    assert "records no digest of its base model" in caplog.text
