from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lmforge.errors import RunDirError
from lmforge.rundir import RunDir, atomic_write_json, atomic_write_text, sha256_file


def test_stage_renames_into_place_only_on_success(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.stage("data") as tmp:
        (tmp / "a.txt").write_text("first", encoding="utf-8")
        assert not run.data_dir.exists()
    assert (run.data_dir / "a.txt").read_text(encoding="utf-8") == "first"

    with pytest.raises(RuntimeError), run.stage("data") as tmp:
        (tmp / "a.txt").write_text("second", encoding="utf-8")
        raise RuntimeError("boom")
    assert (run.data_dir / "a.txt").read_text(encoding="utf-8") == "first"
    assert [p.name for p in run.root.iterdir()] == ["data"]

    with run.stage("data") as tmp:
        (tmp / "b.txt").write_text("third", encoding="utf-8")
    assert sorted(p.name for p in run.data_dir.iterdir()) == ["b.txt"]


def test_manifest_hashes_every_artifact(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    atomic_write_text(tmp_path / "model" / "w.bin", "weights")
    atomic_write_text(tmp_path / "checkpoints" / "c" / "x", "transient")
    manifest = run.update_manifest(spec={"a": 1}, metrics={"accuracy": 0.5})
    assert manifest["files"] == {"model/w.bin": hashlib.sha256(b"weights").hexdigest()}
    manifest = run.update_manifest(metrics={"macro_f1": 0.4})
    assert manifest["metrics"] == {"accuracy": 0.5, "macro_f1": 0.4}
    on_disk = json.loads(run.manifest_path.read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert sha256_file(tmp_path / "model" / "w.bin") == manifest["files"]["model/w.bin"]


def test_atomic_write_leaves_no_temp_and_keeps_mode(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "x.json", {"k": "ü"})
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == {"k": "ü"}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert (tmp_path / "x.json").stat().st_mode & 0o044  # readable by others, like any file


def test_require_and_damaged_manifest(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "nope")
    with pytest.raises(RunDirError, match="does not exist. Run it"):
        run.require("model", hint="Run it.")
    run.root.mkdir()
    with pytest.raises(RunDirError, match="has no model"):
        run.require("model", hint="Run it.")
    run.manifest_path.write_text("{broken", encoding="utf-8")
    with pytest.raises(RunDirError, match="not valid JSON"):
        run.read_manifest()
