"""Every verb that loads a run verifies it, and no stage re-signs a run it did not verify.

The verbs run in-process (``main([...])``, as a subprocess would, with a hermetic HOME) on a copy
of the tiny trained run signed with a key made for the test; ``lmforge serve`` runs for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.cli.__main__ import main
from lmforge.config import spec_from_dict, spec_to_yaml
from lmforge.guard import SIGNATURE, generate_signing_key, sign_run, verify_run
from lmforge.rundir import RunDir, atomic_write_text

pytestmark = pytest.mark.slow


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's signing key (what ``sign_after`` signs with); its public half is trusted."""
    for var in ("LMFORGE_AUTO_SIGN", "XDG_CONFIG_HOME", "LMFORGE_AUDIT_LOG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    key = tmp_path / "keys" / "owner.key"
    key.parent.mkdir()
    generate_signing_key(key)
    monkeypatch.setenv("LMFORGE_SIGNING_KEY", str(key))
    monkeypatch.setenv("LMFORGE_PUBLIC_KEY", str(key) + ".pub")
    return key


@pytest.fixture
def signed(trained_full: Path, tmp_path: Path, keys: Path) -> RunDir:
    """A signed copy of the tiny run, with the spec.yaml the CLI stages read."""
    run = copy_run(trained_full, tmp_path / "run")
    atomic_write_text(run.spec_path, spec_to_yaml(spec_from_dict({"model": {"max_length": 32}})))
    run.update_manifest()
    sign_run(run, keys, signer="owner")
    return run


def _tamper(run: RunDir) -> bytes:
    with open(run.split_path("test"), "a", encoding="utf-8") as fh:
        fh.write('{"text": "planted", "label": "positive"}\n')
    return (run.root / SIGNATURE).read_bytes()


def _refused(args: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_evaluate_verifies_then_re_signs(signed: RunDir, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (signed.root / SIGNATURE).read_bytes()
    assert main(["evaluate", str(signed.root)]) == 0
    assert (signed.root / SIGNATURE).read_bytes() != before
    assert verify_run(signed, str(keys) + ".pub").signature_checked  # eval/ and the card are covered
    (signed.root / SIGNATURE).unlink()
    _refused(["evaluate", str(signed.root)], capsys, "the run is unsigned", "--allow-unsigned")
    assert main(["evaluate", str(signed.root), "--allow-unsigned"]) == 0


@pytest.mark.parametrize("verb", [
    ["evaluate"], ["evaluate", "--allow-unsigned"], ["fairness", "--by-handle"], ["train"], ["compress"],
    ["monitor", "reference", "--output", "ref.json"],
])
def test_a_tampered_signed_run_is_refused_and_not_re_signed(
    signed: RunDir, verb: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    signature = _tamper(signed)
    args = [*verb[:2], str(signed.root), *verb[2:]] if verb[0] == "monitor" else [verb[0], str(signed.root), *verb[1:]]
    _refused(args, capsys, "tampered file: data/test.jsonl")
    assert (signed.root / SIGNATURE).read_bytes() == signature
    assert not (signed.root / "eval").exists() and not (signed.root / "compressed").exists()


def test_prepare_into_a_tampered_signed_run_is_refused(signed: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    signature = _tamper(signed)
    _refused(["prepare", "--out", str(signed.root)], capsys, "tampered file: data/test.jsonl")
    assert (signed.root / SIGNATURE).read_bytes() == signature


def test_monitor_report_refuses_a_tampered_reference(signed: RunDir, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "current.jsonl"
    current.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(60)), encoding="utf-8")
    _tamper(signed)
    _refused(["monitor", "report", "--reference", str(signed.root), "--current", str(current),
              "--output", str(tmp_path / "r.html")], capsys, "tampered file: data/test.jsonl")
    assert not (tmp_path / "r.html").exists()


def test_a_file_changed_during_a_stage_is_not_re_signed(
    signed: RunDir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lmforge.evaluate

    signature = (signed.root / SIGNATURE).read_bytes()
    real = lmforge.evaluate.evaluate

    def evaluate_while_someone_writes(*args: object, **kwargs: object) -> object:
        with open(signed.split_path("train"), "a", encoding="utf-8") as fh:  # not the stage's to write
            fh.write('{"text": "planted", "label": "positive"}\n')
        return real(*args, **kwargs)

    monkeypatch.setattr(lmforge.evaluate, "evaluate", evaluate_while_someone_writes)
    _refused(["evaluate", str(signed.root)], capsys, "changed after it was verified", "data/train.jsonl")
    assert (signed.root / SIGNATURE).read_bytes() == signature  # stale now: the run fails verification


def test_fairness_verifies_and_re_signs(signed: RunDir, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fairness", str(signed.root), "--by-handle", "--min-support", "1", "--json"]) == 0
    assert verify_run(signed, str(keys) + ".pub").signature_checked  # eval/fairness.json is covered
    unsigned = copy_run(signed.root, signed.root.parent / "unsigned")
    (unsigned.root / SIGNATURE).unlink()
    _refused(["fairness", str(unsigned.root), "--by-handle"], capsys, "the run is unsigned")


def test_serve_refuses_a_tampered_monitor_reference(signed: RunDir, tmp_path: Path, keys: Path) -> None:
    """The server verifies the reference run with its own policy (here: the served run passes, signed)."""
    pytest.importorskip("httpx")
    from tests._serve import serve_process

    reference = copy_run(signed.root, tmp_path / "reference")
    _tamper(reference)
    config = {"registry_poll_s": 0, "public_key": str(keys) + ".pub", "monitor": {
        "url": f"sqlite:///{tmp_path / 'monitor.db'}", "reference_run": str(reference.root),
        "reference_state": str(tmp_path / "reference.json"), "detectors": ["text-length-ks"]}}
    with serve_process(tmp_path, signed.root, "--monitor", "--state", str(tmp_path / "state"), config=config,
                       ready=False) as server:
        server.proc.wait(180)
    assert server.proc.returncode != 0
    assert "tampered file: data/test.jsonl" in server.output()
    shutil.rmtree(tmp_path / "state", ignore_errors=True)
