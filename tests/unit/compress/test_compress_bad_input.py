"""Bad input to `lmforge compress`: one clear message, exit code 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests._runs import copy_run, fast_options, write_prepared
from tests.conftest import REPO, cli_env

from lmforge.cli.__main__ import main

FAST = ["--calibration-size", "16", "--repeats", "1"]


def _compress(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["compress", *argv])
    return code, capsys.readouterr().err


def test_run_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_prepared(tmp_path / "run")
    code, err = _compress(capsys, str(run.root))
    assert code == 2
    assert "has no trained model" in err and "lmforge train" in err
    assert not (run.root / "compressed").exists()
    code, err = _compress(capsys, str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("budget", ["abc", "1,5", "-1", "nan"])
def test_budget_that_is_not_a_number_of_points(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               budget: str) -> None:
    code, err = _compress(capsys, str(tmp_path), "--budget", budget)
    assert code == 2
    assert err.startswith("error: --budget must be") and repr(budget) in err


def test_unknown_compressor_lists_the_available_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _compress(capsys, str(tmp_path), "--only", "onnx-int4")
    assert code == 2
    assert "Unknown compressor 'onnx-int4' in --only. Available: distilled, distilled-int8, distilled-pruned," in err


@pytest.mark.slow
def test_architecture_the_exporter_cannot_handle(trained_full: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    config = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "gpt2"
    (run.model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    code, err = _compress(capsys, str(run.root), "--only", "onnx-int8-dynamic", *FAST)
    assert code == 2
    assert "ONNX export supports the encoder architectures albert, bert," in err and "'gpt2'" in err
    assert not (run.root / "compressed").exists()
    code, err = _compress(capsys, str(run.root), "--only", "pruned", *FAST)
    assert code == 2 and "Structured pruning supports model types bert," in err


@pytest.mark.slow
def test_calibration_set_too_small(trained_full: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    lines = run.split_path("train").read_text(encoding="utf-8").splitlines()[:10]
    run.split_path("train").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, err = _compress(capsys, str(run.root), "--only", "onnx-fp32,onnx-int8-static", *FAST)
    assert code == 2
    assert "at least 16 training texts" in err and "has 10" in err and "--only" in err
    assert not (run.root / "compressed").exists()  # onnx-fp32 was not built either: checks come first
    code, err = _compress(capsys, str(run.root), "--calibration-size", "8")
    assert code == 2 and "--calibration-size must be at least 16" in err


@pytest.mark.slow
def test_missing_extra_names_the_pip_command(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    code = textwrap.dedent(f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "onnxruntime":
                    raise ImportError("blocked")
                return None

        sys.meta_path.insert(0, Blocker())
        from lmforge.cli.__main__ import main
        sys.exit(main(["compress", {str(run.root)!r}, "--only", "onnx-fp32"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=cli_env(tmp_path), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "needs the Python package 'onnxruntime'" in proc.stderr
    assert "pip install 'lmforge[compress]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run.root / "compressed").exists()


def test_compress_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compress", "--help"])
    assert info.value.code == 0
    assert "lmforge compress runs/demo --budget 0.5" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failing_build_leaves_no_half_written_variant(trained_full: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from lmforge.compress import compress
    from lmforge.compress._onnx_fp32 import OnnxFp32

    def boom(self: object, ctx: object, out: Path) -> dict:
        (out / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(OnnxFp32, "build", boom)
    run = copy_run(trained_full, tmp_path / "run")
    with pytest.raises(RuntimeError, match="disk full"):
        compress(run, fast_options(only=("onnx-fp32",)))
    leftovers = sorted(p.name for p in (run.root / "compressed").iterdir())
    assert leftovers == []  # neither the variant nor its temporary folder, and no selection
