"""Signed runs: a signed run verifies; 50+ distinct tamperings of it all fail, each named."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmforge.cli.__main__ import main
from lmforge.guard import (
    SIGNATURE,
    CryptoKeyError,
    IntegrityError,
    generate_signing_key,
    public_key_id,
    sign_run,
    verify_run,
)
from lmforge.guard._signing import load_public_key
from lmforge.rundir import RunDir


def safetensors(n: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(range(4 * n))


def build_run(root: Path, flavor: str = "a") -> RunDir:
    run = RunDir(root)
    for rel, text in {
        "spec.yaml": f"name: demo-{flavor}\n",
        "data/train.jsonl": '{"text": "great flight", "label": "positive"}\n{"text": "lost bag", "label": "negative"}\n',
        "data/test.jsonl": '{"text": "nice crew", "label": "positive"}\n',
        "data/labels.json": '{"labels": ["negative", "positive"]}\n',
        "model/config.json": '{"model_type": "bert"}\n',
        "model/labels.json": '{"labels": ["negative", "positive"]}\n',
        "eval/metrics.json": '{"accuracy": 0.9, "macro_f1": 0.88, "n_test": 1}\n',
        "MODEL_CARD.md": f"# Model card {flavor}\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "model" / "model.safetensors").write_bytes(safetensors(4 if flavor == "a" else 5))
    (root / "logs").mkdir()
    (root / "logs" / "train.log").write_text("{}\n", encoding="utf-8")
    run.update_manifest(spec={"name": f"demo-{flavor}"}, metrics={"accuracy": 0.9})
    return run


@dataclass
class Keys:
    private: Path
    public: Path
    attacker: Path
    attacker_public: Path
    signed: Path
    other: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    base = tmp_path_factory.mktemp("keys")
    generate_signing_key(base / "owner.key")
    generate_signing_key(base / "attacker.key")
    signed = build_run(base / "signed")
    sign_run(signed, base / "owner.key", signer="ci")
    other = build_run(base / "other", "b")
    sign_run(other, base / "owner.key", signer="ci")
    return Keys(base / "owner.key", base / "owner.key.pub", base / "attacker.key", base / "attacker.key.pub",
                signed.root, other.root)


# -- tamperings -------------------------------------------------------------------------------------
def _json_edit(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _sig_edit(change: Callable[[dict], object]) -> Callable[[Path, Keys], None]:
    return lambda r, k: _json_edit(r / SIGNATURE, change)


def _man_edit(change: Callable[[dict], object]) -> Callable[[Path, Keys], None]:
    return lambda r, k: _json_edit(r / "manifest.json", change)


def _flip(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def _swap_contents(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def _replace_with_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "x").write_text("x", encoding="utf-8")


def _symlink_to(p: Path, target: Path) -> None:
    p.unlink()
    p.symlink_to(target)


def _symlinked_variant(r: Path, k: Keys) -> None:
    elsewhere = r.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.onnx").write_bytes(b"\x08\x07")
    (elsewhere / "variant.json").write_text("{}")
    (r / "compressed").mkdir()
    (r / "compressed/x").symlink_to(elsewhere)


def _symlinked_data(r: Path, k: Keys) -> None:
    shutil.copytree(r / "data", r.parent / "data-copy")
    shutil.rmtree(r / "data")
    (r / "data").symlink_to(r.parent / "data-copy")


def _hidden_in_variant(r: Path, k: Keys) -> None:
    (r / "compressed/x/.cache").mkdir(parents=True)
    (r / "compressed/x/.cache/model.onnx").write_bytes(b"\x08\x07")


def _edit_and_rehash(r: Path, k: Keys) -> None:
    (r / "eval" / "metrics.json").write_text('{"accuracy": 0.99}\n', encoding="utf-8")
    RunDir(r).update_manifest()


def _edit_and_resign(r: Path, k: Keys) -> None:
    (r / "model" / "config.json").write_text('{"model_type": "evil"}\n', encoding="utf-8")
    RunDir(r).update_manifest()
    sign_run(r, k.attacker, signer="ci")


def _attacker_sig_with_owner_id(r: Path, k: Keys) -> None:
    owner_id = public_key_id(load_public_key(k.public))
    sign_run(r, k.attacker, signer="ci")
    _json_edit(r / SIGNATURE, lambda s: s.update(key_id=owner_id))


def _manifest_hash_matches_tampered(r: Path, k: Keys) -> None:
    from lmforge.rundir import sha256_file

    (r / "MODEL_CARD.md").write_text("# a different card\n", encoding="utf-8")
    _json_edit(r / "manifest.json", lambda m: m["files"].update({"MODEL_CARD.md": sha256_file(r / "MODEL_CARD.md")}))


def _manifest_drop_entry(r: Path, k: Keys) -> None:
    (r / "data" / "test.jsonl").unlink()
    _json_edit(r / "manifest.json", lambda m: m["files"].pop("data/test.jsonl"))


def _manifest_add_entry(r: Path, k: Keys) -> None:
    from lmforge.rundir import sha256_file

    (r / "backdoor.py").write_text("print('x')\n", encoding="utf-8")
    _json_edit(r / "manifest.json", lambda m: m["files"].update({"backdoor.py": sha256_file(r / "backdoor.py")}))


TAMPERS: dict[str, tuple[Callable[[Path, Keys], object], str]] = {
    # files
    "append to train split": (lambda r, k: _append(r / "data/train.jsonl", '{"text": "x"}\n'),
                              "tampered file: data/train.jsonl"),
    "flip a weight byte": (lambda r, k: _flip(r / "model/model.safetensors"), "tampered file: model/model.safetensors"),
    "truncate weights": (lambda r, k: (r / "model/model.safetensors").write_bytes(
        (r / "model/model.safetensors").read_bytes()[:20]), "tampered file: model/model.safetensors"),
    "empty a file": (lambda r, k: (r / "model/config.json").write_text(""), "tampered file: model/config.json"),
    "delete config": (lambda r, k: (r / "model/config.json").unlink(), "missing file: model/config.json"),
    "delete model card": (lambda r, k: (r / "MODEL_CARD.md").unlink(), "missing file: MODEL_CARD.md"),
    "delete spec": (lambda r, k: (r / "spec.yaml").unlink(), "missing file: spec.yaml"),
    "delete metrics": (lambda r, k: (r / "eval/metrics.json").unlink(), "missing file: eval/metrics.json"),
    "delete data folder": (lambda r, k: shutil.rmtree(r / "data"), "missing file: data/labels.json"),
    "delete test split": (lambda r, k: (r / "data/test.jsonl").unlink(), "missing file: data/test.jsonl"),
    "delete weights": (lambda r, k: (r / "model/model.safetensors").unlink(), "missing file: model/model.safetensors"),
    "add file at root": (lambda r, k: (r / "notes.txt").write_text("hi"), "extra file: notes.txt"),
    "add pickle to model": (lambda r, k: (r / "model/pytorch_model.bin").write_bytes(b"\x80\x02N."),
                            "extra file: model/pytorch_model.bin"),
    "add file to eval": (lambda r, k: (r / "eval/new.json").write_text("{}"), "extra file: eval/new.json"),
    "add new folder": (lambda r, k: (r / "compressed/int8").mkdir(parents=True) or (
        r / "compressed/int8/model.onnx").write_bytes(b"\x08\x07"), "extra file: compressed/int8/model.onnx"),
    "rename a file": (lambda r, k: (r / "model/config.json").rename(r / "model/config2.json"),
                      "extra file: model/config2.json"),
    "move a file": (lambda r, k: (r / "model/labels.json").rename(r / "eval/labels.json"),
                    "missing file: model/labels.json"),
    "swap two files": (lambda r, k: _swap_contents(r / "data/train.jsonl", r / "data/test.jsonl"),
                       "tampered file: data/test.jsonl"),
    "copy under a new name": (lambda r, k: shutil.copy(r / "model/config.json", r / "model/config copy.json"),
                              "extra file: model/config copy.json"),
    "file replaced by a folder": (lambda r, k: _replace_with_dir(r / "model/config.json"),
                                  "extra file: model/config.json/x"),
    "file replaced by a symlink": (lambda r, k: _symlink_to(r / "model/config.json", r / "data/labels.json"),
                                   "symlink: model/config.json -> "),
    "symlinked variant folder": (_symlinked_variant, "symlink: compressed/x -> "),
    "data folder replaced by a symlink": (_symlinked_data, "symlink: data -> "),
    "symlink in a hidden folder": (lambda r, k: (r / ".cache").mkdir() or (r / ".cache/w").symlink_to("/etc"),
                                   "symlink: .cache/w -> /etc"),
    "hidden file in model": (lambda r, k: (r / "model/.tokenizer.json").write_text("{}"),
                             "extra file: model/.tokenizer.json (hidden"),
    "hidden folder in a variant": (_hidden_in_variant, "extra file: compressed/x/.cache/model.onnx (hidden"),
    "a FIFO in model": (lambda r, k: os.mkfifo(r / "model/tokenizer.json"), "not a regular file: model/tokenizer.json"),
    "rename by case": (lambda r, k: (r / "MODEL_CARD.md").rename(r / "Model_Card.md"), "extra file: Model_Card.md"),
    "trailing newline": (lambda r, k: _append(r / "eval/metrics.json", "\n"),
                         "tampered file: eval/metrics.json"),
    "edit spec": (lambda r, k: (r / "spec.yaml").write_text("name: evil\n"), "tampered file: spec.yaml"),
    "reorder split lines": (lambda r, k: (r / "data/train.jsonl").write_text("".join(reversed(
        (r / "data/train.jsonl").read_text().splitlines(keepends=True)))), "tampered file: data/train.jsonl"),
    "weights replaced by a pickle": (lambda r, k: (r / "model/model.safetensors").write_bytes(
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N."), "unsafe model file: model/model.safetensors"),
    # the manifest
    "edit a metric": (_man_edit(lambda m: m["metrics"].update(accuracy=0.99)), "manifest.json was modified"),
    "manifest hash matches a tampered file": (_manifest_hash_matches_tampered, "manifest.json was modified"),
    "drop a manifest entry and its file": (_manifest_drop_entry, "manifest.json was modified"),
    "add a manifest entry and its file": (_manifest_add_entry, "manifest.json was modified"),
    "reformat the manifest": (lambda r, k: (r / "manifest.json").write_text(json.dumps(json.loads(
        (r / "manifest.json").read_text()))), "manifest.json was modified"),
    "trailing space in manifest": (lambda r, k: _append(r / "manifest.json", " "), "manifest.json was modified"),
    "manifest not JSON": (lambda r, k: (r / "manifest.json").write_text("{oops"), "manifest.json is not valid JSON"),
    "manifest is a list": (lambda r, k: (r / "manifest.json").write_text("[]"), "has no 'files' table"),
    "manifest with a path escape": (_man_edit(lambda m: m["files"].update({"../../etc/passwd": "0" * 64})),
                                    "malformed entry '../../etc/passwd'"),
    "rehash with update_manifest": (_edit_and_rehash, "manifest.json was modified"),
    "delete the manifest": (lambda r, k: (r / "manifest.json").unlink(), "has no manifest.json"),
    # the signature
    "delete the signature": (lambda r, k: (r / SIGNATURE).unlink(), "the run is unsigned"),
    "signature not JSON": (lambda r, k: (r / SIGNATURE).write_text("not json"), "signature.json is damaged"),
    "signature empty": (lambda r, k: (r / SIGNATURE).write_text(""), "signature.json is damaged"),
    "signature is a list": (lambda r, k: (r / SIGNATURE).write_text("[]"), "signature.json is damaged"),
    "signature bit flip": (_sig_edit(lambda s: s.update(signature=base64.b64encode(
        bytes([base64.b64decode(s["signature"])[0] ^ 1]) + base64.b64decode(s["signature"])[1:]).decode())),
        "the signature does not verify"),
    "signature truncated": (_sig_edit(lambda s: s.update(signature=s["signature"][:40])), "signature"),
    "signature not base64": (_sig_edit(lambda s: s.update(signature="!!not base64!!")), "not base64"),
    "signed digest changed": (_sig_edit(lambda s: s.update(manifest_sha256="0" * 64)), "does not verify"),
    "key id changed": (_sig_edit(lambda s: s.update(key_id="0123456789abcdef")), "signed by key 0123456789abcdef"),
    "signing time changed": (_sig_edit(lambda s: s.update(signed_at="2000-01-01T00:00:00+00:00")), "does not verify"),
    "signer changed": (_sig_edit(lambda s: s.update(signer="root")), "does not verify"),
    "algorithm none": (_sig_edit(lambda s: s.update(algorithm="none")), "algorithm 'none'"),
    "format changed": (_sig_edit(lambda s: s.update(format="other/1")), "format 'other/1'"),
    "signature field missing": (_sig_edit(lambda s: s.pop("signature")), "signature.json is damaged"),
    "signature is a folder": (lambda r, k: ((r / SIGNATURE).unlink(), (r / SIGNATURE).mkdir()), "unsigned"),
    # keys
    "re-signed by an attacker": (lambda r, k: sign_run(r, k.attacker, signer="ci"), "not by the verifying key"),
    "tampered and re-signed by an attacker": (_edit_and_resign, "not by the verifying key"),
    "attacker signature with the owner's key id": (_attacker_sig_with_owner_id, "does not verify"),
    "signature of another run": (lambda r, k: shutil.copy(k.other / SIGNATURE, r / SIGNATURE),
                                 "manifest.json was modified after signing"),
    "manifest and signature of another run": (lambda r, k: (shutil.copy(k.other / SIGNATURE, r / SIGNATURE),
                                                            shutil.copy(k.other / "manifest.json", r / "manifest.json")),
                                              "tampered file: MODEL_CARD.md"),
}


def test_at_least_fifty_distinct_tamperings() -> None:
    assert len(TAMPERS) >= 50


def test_untampered_run_verifies(keys: Keys) -> None:
    result = verify_run(keys.signed, keys.public)
    assert result.signed and result.signature_checked and result.signer == "ci"
    assert result.files_checked == 9 and result.model_files_scanned == 3
    assert result.key_id == public_key_id(load_public_key(keys.public))


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_run_fails_verification(keys: Keys, tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(keys.signed, run, symlinks=True)
    tamper, fragment = TAMPERS[name]
    tamper(run, keys)
    with pytest.raises(IntegrityError) as exc:
        verify_run(run, keys.public)
    assert fragment in str(exc.value)


def test_wrong_public_key_fails(keys: Keys) -> None:
    with pytest.raises(IntegrityError, match="not by the verifying key"):
        verify_run(keys.signed, keys.attacker_public)


def test_all_problems_are_listed_together(keys: Keys, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(keys.signed, run)
    (run / "spec.yaml").write_text("x")
    (run / "MODEL_CARD.md").unlink()
    (run / "extra.txt").write_text("x")
    with pytest.raises(IntegrityError) as exc:
        verify_run(run, keys.public)
    message = str(exc.value)
    assert "3 problem(s)" in message
    for fragment in ("tampered file: spec.yaml", "missing file: MODEL_CARD.md", "extra file: extra.txt"):
        assert fragment in message


def test_unsigned_runs_need_explicit_permission(tmp_path: Path, keys: Keys) -> None:
    run = build_run(tmp_path / "run")
    with pytest.raises(IntegrityError, match="unsigned"):
        verify_run(run, keys.public)
    result = verify_run(run, None, allow_unsigned=True)
    assert not result.signed and not result.signature_checked and result.files_checked == 9
    (run.root / "model/config.json").write_text("{}")
    with pytest.raises(IntegrityError, match="tampered file: model/config.json"):
        verify_run(run, None, allow_unsigned=True)  # hashes are still checked
    with pytest.raises(IntegrityError, match="no public key was given"):
        verify_run(keys.signed, None)
    assert not verify_run(keys.signed, None, allow_unsigned=True).signature_checked


def test_logs_are_outside_the_signature(keys: Keys, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(keys.signed, run)
    (run / "logs/train.log").write_text("appended by a later resume\n")
    assert verify_run(run, keys.public).signature_checked


def test_signing_refuses_a_run_that_differs_from_its_manifest(tmp_path: Path, keys: Keys) -> None:
    run = build_run(tmp_path / "run")
    (run.root / "eval/metrics.json").write_text("{}")
    with pytest.raises(IntegrityError, match="(?s)Refusing to sign.*tampered file: eval/metrics.json"):
        sign_run(run, keys.private)
    assert not (run.root / SIGNATURE).exists()


def test_key_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kid = generate_signing_key(tmp_path / "k")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_id(load_public_key(tmp_path / "k.pub")) == kid
    with pytest.raises(CryptoKeyError, match="already exists"):
        generate_signing_key(tmp_path / "k")
    with pytest.raises(CryptoKeyError, match="Signing key not found.*lmforge key signing"):
        sign_run(build_run(tmp_path / "r"), tmp_path / "none.key")
    with pytest.raises(CryptoKeyError, match="not a PEM public key"):
        verify_run(tmp_path / "r", tmp_path / "k")  # a private key given as the public one
    monkeypatch.setenv("LMFORGE_SIGNING_PASSPHRASE", "correct horse battery staple")
    generate_signing_key(tmp_path / "enc")
    assert b"ENCRYPTED" in (tmp_path / "enc").read_bytes()
    sign_run(tmp_path / "r", tmp_path / "enc")
    monkeypatch.setenv("LMFORGE_SIGNING_PASSPHRASE", "wrong")
    with pytest.raises(CryptoKeyError, match="passphrase") as exc:
        sign_run(tmp_path / "r", tmp_path / "enc")
    assert "wrong" not in str(exc.value).replace("is wrong", "")
    monkeypatch.delenv("LMFORGE_SIGNING_PASSPHRASE")
    with pytest.raises(CryptoKeyError, match="is encrypted; set \\$LMFORGE_SIGNING_PASSPHRASE"):
        sign_run(tmp_path / "r", tmp_path / "enc")
    assert verify_run(tmp_path / "r", tmp_path / "enc.pub").signature_checked


def test_cli_sign_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    assert main(["key", "signing", str(tmp_path / "s.key"), "--audit-log", str(log)]) == 0
    run = build_run(tmp_path / "run")
    assert main(["verify", str(run.root), "--public-key", str(tmp_path / "s.key.pub")]) == 2
    assert "unsigned" in capsys.readouterr().err
    assert main(["verify", str(run.root), "--allow-unsigned"]) == 0
    assert "UNSIGNED (allowed)" in capsys.readouterr().out
    assert main(["sign", str(run.root), "--key", str(tmp_path / "s.key"), "--audit-log", str(log)]) == 0
    assert main(["verify", str(run.root), "--public-key", str(tmp_path / "s.key.pub")]) == 0
    assert "signature valid" in capsys.readouterr().out
    os.remove(run.root / "MODEL_CARD.md")
    assert main(["verify", str(run.root), "--public-key", str(tmp_path / "s.key.pub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing file: MODEL_CARD.md" in err and "Traceback" not in err
    actions = [json.loads(line)["action"] for line in log.read_text().splitlines()]
    assert actions == ["key.create", "run.sign"]
