"""Signed means signed, without a model: symlinks are never followed, unlisted files are refused, and
what a loader reads after verification must still be what verification hashed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from tests.unit.guard.test_guard_signing import build_run

from lmforge.guard import (
    SIGNATURE,
    FileStamps,
    IntegrityError,
    UnsafeModelError,
    generate_signing_key,
    scan_model_dir,
    scan_model_file,
    sign_run,
    trust_before_rewrite,
    verify_run,
)
from lmforge.rundir import RunDir


@pytest.fixture
def signed(tmp_path: Path) -> tuple[RunDir, Path]:
    generate_signing_key(tmp_path / "owner.key")
    run = build_run(tmp_path / "run")
    sign_run(run, tmp_path / "owner.key", signer="ci")
    return run, tmp_path / "owner.key.pub"


def _later() -> None:
    time.sleep(0.02)  # past the filesystem's timestamp tick


# -- symlinks ---------------------------------------------------------------------------------------
def test_walk_and_hashes_never_follow_a_symlink(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.onnx").write_bytes(b"\x08\x07")
    (run.root / "compressed").mkdir()
    (run.root / "compressed" / "x").symlink_to(elsewhere)
    (run.root / "eval" / "linked.json").symlink_to(run.root / "eval" / "metrics.json")
    kinds = dict(run.walk())
    assert kinds["compressed/x"] == "symlink" and kinds["eval/linked.json"] == "symlink"
    assert "compressed/x/model.onnx" not in kinds  # not entered
    hashes = run.file_hashes()
    assert not any(rel.startswith("compressed/") for rel in hashes) and "eval/linked.json" not in hashes


def test_a_symlinked_variant_folder_fails_verification_by_name(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    (tmp_path / "elsewhere").mkdir()
    (run.root / "compressed").mkdir()
    (run.root / "compressed" / "x").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(IntegrityError, match=r"symlink: compressed/x -> .*elsewhere"):
        verify_run(run, None, allow_unsigned=True)
    with pytest.raises(IntegrityError, match="symlink: compressed/x"):
        sign_run(run, _key(tmp_path))


def test_symlinks_in_logs_and_checkpoints_are_not_the_runs_business(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    (run.root / "logs" / "latest").symlink_to(run.root / "logs" / "train.log")
    (run.root / "checkpoints").mkdir()
    (run.root / "checkpoints" / "last").symlink_to(tmp_path)
    assert verify_run(run, None, allow_unsigned=True).files_checked == 9


def test_model_scans_refuse_symlinks_instead_of_following_them(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "weights.bin").write_bytes(b"\x80\x02N.")
    (folder / "model.safetensors").symlink_to(tmp_path / "weights.bin")
    (folder / "sub").symlink_to(tmp_path)
    with pytest.raises(UnsafeModelError) as exc:
        scan_model_dir(folder)
    assert "model.safetensors: it is a symbolic link" in str(exc.value) and "sub: it is a symbolic link" in str(exc.value)
    with pytest.raises(UnsafeModelError, match="symbolic link"):
        scan_model_file(folder / "model.safetensors")


# -- unlisted files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", ["model/pytorch_model.bin", "model/tokenizer.json", "model/.tokenizer.json",
                                 "model/.cache/x", "compressed/int8/.model.onnx"])
def test_an_unlisted_file_in_a_model_folder_is_named(signed: tuple[RunDir, Path], rel: str) -> None:
    run, public = signed
    path = run.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(IntegrityError, match=f"extra file: {rel} "):
        verify_run(run, public)


def test_hidden_stage_folders_outside_model_folders_are_ignored(signed: tuple[RunDir, Path]) -> None:
    run, public = signed
    (run.root / ".eval.abc.tmp").mkdir()
    (run.root / ".eval.abc.tmp" / "metrics.json").write_text("{}")
    (run.root / "compressed" / ".int8.abc.tmp").mkdir(parents=True)
    (run.root / "compressed" / ".int8.abc.tmp" / "model.onnx").write_bytes(b"\x08\x07")
    assert verify_run(run, public).signature_checked


# -- verified, then loaded: FileStamps ---------------------------------------------------------------
def test_check_unchanged_passes_when_nothing_changed(signed: tuple[RunDir, Path]) -> None:
    run, public = signed
    check = verify_run(run, public)
    (run.root / "model" / "config.json").read_bytes()  # reading changes nothing
    check.check_unchanged()
    assert "stamps" not in check.to_dict() and len(check.manifest_sha256) == 64


@pytest.mark.parametrize("how", ["rewritten in place", "replaced by rename", "swapped and swapped back",
                                 "touched back to its old mtime", "file added to model/", "file removed"])
def test_a_file_changed_after_verification_is_named(signed: tuple[RunDir, Path], how: str) -> None:
    run, public = signed
    check = verify_run(run, public)
    weights = run.root / "model" / "model.safetensors"
    original = weights.read_bytes()
    _later()
    if how == "rewritten in place":
        weights.write_bytes(original)  # the same bytes, even: it was written after it was hashed
    elif how == "replaced by rename":
        (run.root / "model" / "w.tmp").write_bytes(original)
        os.replace(run.root / "model" / "w.tmp", weights)
    elif how == "swapped and swapped back":
        os.replace(weights, run.root / "w.saved")
        weights.write_bytes(b"evil")
        os.replace(run.root / "w.saved", weights)  # the verified inode is back in place
    elif how == "touched back to its old mtime":
        st = weights.stat()
        weights.write_bytes(b"evil" + original[4:])
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif how == "file added to model/":
        (run.root / "model" / "tokenizer.json").write_text("{}")
        (run.root / "model" / "tokenizer.json").unlink()  # gone again before the check: the folder still shows it
    else:
        (run.root / "model" / "labels.json").unlink()
    with pytest.raises(IntegrityError, match="changed after it was verified") as exc:
        check.check_unchanged()
    assert "model/" in str(exc.value)


def test_a_changed_manifest_is_named(signed: tuple[RunDir, Path]) -> None:
    run, public = signed
    check = verify_run(run, public)
    _later()
    run.update_manifest()
    with pytest.raises(IntegrityError, match="manifest.json"):
        check.check_unchanged()
    check.check_unchanged(skip=("manifest.json",))


def test_check_unchanged_skips_what_a_stage_wrote(signed: tuple[RunDir, Path]) -> None:
    run, public = signed
    check = verify_run(run, public)
    _later()
    (run.root / "eval" / "metrics.json").write_text('{"accuracy": 1.0}')
    (run.root / "MODEL_CARD.md").write_text("# new\n")
    check.check_unchanged(skip=("eval", "MODEL_CARD.md"))
    (run.root / "data" / "train.jsonl").write_text("")
    with pytest.raises(IntegrityError, match="data/train.jsonl"):
        check.check_unchanged(skip=("eval", "MODEL_CARD.md"))


def test_file_stamps_of_files_outside_a_root(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    weights = tmp_path / "base" / "w"
    weights.write_bytes(b"abc")
    stamps = FileStamps(tmp_path / "elsewhere")
    assert stamps.hash(weights) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    (tmp_path / "base" / "link").symlink_to(weights)
    assert stamps.hash(tmp_path / "base" / "link") == "" and "link" in next(iter(stamps.unreadable))
    assert stamps.changed() == []
    _later()
    weights.write_bytes(b"abd")
    assert stamps.changed() == [str(weights)]


# -- stages that re-sign --------------------------------------------------------------------------------
def test_trust_before_rewrite_verifies_signed_runs_only(signed: tuple[RunDir, Path], tmp_path: Path) -> None:
    run, public = signed
    assert trust_before_rewrite(tmp_path / "new", public) is None
    assert trust_before_rewrite(build_run(tmp_path / "unsigned"), public) is None
    check = trust_before_rewrite(run, public)
    assert check is not None and check.signature_checked
    (run.root / "data" / "train.jsonl").write_text("")
    with pytest.raises(IntegrityError, match="tampered file: data/train.jsonl"):
        trust_before_rewrite(run, public)
    (run.root / SIGNATURE).unlink()
    (run.root / SIGNATURE).symlink_to(tmp_path / "nowhere")  # a dangling signature is still a signature
    with pytest.raises(IntegrityError):
        trust_before_rewrite(run, public)


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "k.key"
    if not key.exists():
        generate_signing_key(key)
    return key


def test_copying_a_run_with_symlinks_keeps_them_refused(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    (run.root / "data" / "more.jsonl").symlink_to(run.root / "data" / "train.jsonl")
    copy = tmp_path / "copy"
    shutil.copytree(run.root, copy, symlinks=True)
    with pytest.raises(IntegrityError, match="symlink: data/more.jsonl"):
        verify_run(copy, None, allow_unsigned=True)
