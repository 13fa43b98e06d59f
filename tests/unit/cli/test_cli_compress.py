"""`lmforge compress RUN` on a copy of the tiny run: what it prints, the files it writes, its user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.cli.__main__ import main
from lmforge.compress import registered
from lmforge.rundir import RunDir


@pytest.fixture
def run(trained_full: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LMFORGE_AUTO_SIGN", "0")  # signing after a stage is the trust tests' subject
    return copy_run(trained_full, tmp_path / "run")


@pytest.mark.slow
def test_compress_builds_the_variant_selects_and_reports(run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    # onnx-fp32 alone, 2 timed repeats: the quickest complete path through the stage.
    assert main(["compress", str(run.root), "--only", "onnx-fp32", "--repeats", "2"]) == 0
    out = capsys.readouterr()
    compressed = run.root / "compressed"
    assert sorted(p.name for p in compressed.iterdir()) == [
        "baseline.json", "compression_report.md", "onnx-fp32", "selected", "tradeoff.png"]
    assert {"model.onnx", "variant.json", "lmforge_model.json", "tokenizer.json"} <= {
        p.name for p in (compressed / "onnx-fp32").iterdir()}
    variant = json.loads((compressed / "onnx-fp32" / "variant.json").read_text(encoding="utf-8"))
    baseline = json.loads((compressed / "baseline.json").read_text(encoding="utf-8"))
    selected = json.loads((compressed / "selected").read_text(encoding="utf-8"))
    n_test = len(run.split_path("test").read_text(encoding="utf-8").splitlines())
    assert variant["n_test"] == n_test == 12
    lat = variant["latency"]

    lines = out.out.splitlines()
    assert lines[0] == f"measuring fp32 (typical length {baseline['measured']['seq_len']} tokens, {n_test} test texts)"
    assert lines[1] == "building onnx-fp32 (ONNX export, fused attention/LayerNorm/GELU kernels, fp32)"
    assert lines[2] == (
        f"  onnx-fp32: {variant['size_mb']:.1f} MB, {lat['batch_1_ms']:.1f} ms @1, {lat['batch_32_ms']:.1f} ms @32, "
        f"accuracy {variant['accuracy']:.4f} (fp32 {baseline['accuracy']:.4f})"
    )
    # Which one wins is a measurement (onnx-fp32 only when faster than fp32); the stage says what it wrote.
    assert selected["variant"] in {"fp32", "onnx-fp32"} and selected["budget"] == 1.0
    assert lines[3:] == [
        f"selected {selected['variant']}: {selected['reason']}",
        f"report: {run.root}/compressed/compression_report.md",
        f"selected: {selected['variant']}",
    ]
    assert run.read_manifest()["compress"]["selected"] == selected["variant"]
    assert not (run.root / "signature.json").exists()  # LMFORGE_AUTO_SIGN=0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--only", "onnx-int3"],
         "Unknown compressor 'onnx-int3' in --only. Available: " + ", ".join(sorted(registered())) + "."),
        (["--budget", "lots"],
         "--budget must be a number of accuracy points such as 1.0 (one point below fp32), got 'lots'."),
        (["--budget", "-1"], "--budget must be between 0 and 100 accuracy points, got '-1'."),
    ],
)
def test_compress_user_errors_exit_2_and_write_nothing(
    run: RunDir, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compress", str(run.root), *extra]) == 2
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"error: {message}\n")
    assert not (run.root / "compressed").exists()
