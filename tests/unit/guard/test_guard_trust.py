"""The trust policy of the CLI: sign what you build with your key, verify before loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.guard.test_guard_signing import build_run

from lmforge.guard import (
    SIGNATURE,
    CryptoKeyError,
    IntegrityError,
    auto_sign,
    default_signing_key,
    generate_signing_key,
    trust_run,
    trusted_public_key,
)
from lmforge.guard._signing import load_public_key, public_key_id


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "LMFORGE_SIGNING_KEY", "LMFORGE_PUBLIC_KEY", "LMFORGE_AUTO_SIGN"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_auto_sign_creates_the_user_key_once_and_trust_run_accepts(tmp_path: Path, _home: Path) -> None:
    run = build_run(tmp_path / "run")
    first = auto_sign(run)
    assert first is not None and first["created"] is True
    key = default_signing_key()
    assert key == _home / ".config" / "lmforge" / "signing.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    pub = key.with_name("signing.key.pub")
    assert first["key_id"] == public_key_id(load_public_key(pub))
    second = auto_sign(run)
    assert second is not None and second["created"] is False and second["key_id"] == first["key_id"]
    result = trust_run(run)
    assert result.signed and result.signature_checked and result.key_id == first["key_id"]


def test_xdg_config_home_and_env_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_signing_key() == tmp_path / "xdg" / "lmforge" / "signing.key"
    team = tmp_path / "team.key"
    generate_signing_key(team)
    monkeypatch.setenv("LMFORGE_SIGNING_KEY", str(team))
    run = build_run(tmp_path / "run")
    signed = auto_sign(run)
    assert signed is not None and signed["key"] == str(team) and not default_signing_key().exists()
    # The verifier finds the public half next to $LMFORGE_SIGNING_KEY.
    assert trusted_public_key() == tmp_path / "team.key.pub"
    assert trust_run(run).signature_checked
    monkeypatch.setenv("LMFORGE_SIGNING_KEY", str(tmp_path / "missing.key"))
    with pytest.raises(CryptoKeyError, match="missing.key, which does not exist"):
        auto_sign(run)


def test_auto_sign_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_AUTO_SIGN", "0")
    run = build_run(tmp_path / "run")
    assert auto_sign(run) is None
    assert not (run.root / SIGNATURE).exists() and not default_signing_key().exists()


def test_unsigned_tampered_and_foreign_runs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path / "run")
    with pytest.raises(IntegrityError, match="unsigned.*--allow-unsigned"):
        trust_run(run)
    assert trust_run(run, allow_unsigned=True).signature_checked is False

    with (run.root / "data" / "train.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"text": "poisoned", "label": "positive"}\n')
    with pytest.raises(IntegrityError, match="tampered file: data/train.jsonl"):
        trust_run(run, allow_unsigned=True)

    signed = build_run(tmp_path / "signed")
    auto_sign(signed)
    stranger = tmp_path / "stranger.key"
    generate_signing_key(stranger)
    with pytest.raises(IntegrityError, match="not by the verifying key"):
        trust_run(signed, tmp_path / "stranger.key.pub")
    monkeypatch.setenv("LMFORGE_PUBLIC_KEY", str(tmp_path / "stranger.key.pub"))
    with pytest.raises(IntegrityError, match="not by the verifying key"):
        trust_run(signed)
    monkeypatch.setenv("LMFORGE_PUBLIC_KEY", str(tmp_path / "nope.pub"))
    with pytest.raises(CryptoKeyError, match="nope.pub"):
        trust_run(signed)


def test_signed_run_without_any_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path / "run")
    auto_sign(run)
    monkeypatch.setenv("HOME", str(tmp_path / "someone-else"))
    with pytest.raises(IntegrityError, match="no public key"):
        trust_run(run)
    assert trust_run(run, allow_unsigned=True).signature_checked is False  # files checked only
    (run.root / "MODEL_CARD.md").write_text("edited", encoding="utf-8")
    with pytest.raises(IntegrityError, match="tampered file: MODEL_CARD.md"):
        trust_run(run, allow_unsigned=True)
    assert json.loads((run.root / SIGNATURE).read_text(encoding="utf-8"))["algorithm"] == "ed25519"


def test_not_a_run_directory(tmp_path: Path) -> None:
    from lmforge.errors import RunDirError

    with pytest.raises(RunDirError, match="lmforge train"):
        trust_run(tmp_path)
