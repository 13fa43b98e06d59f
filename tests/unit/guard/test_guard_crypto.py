"""Encryption at rest: round trip, wrong or missing key, tampering, rotation, revocation, key files."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest

from lmforge.cli.__main__ import main
from lmforge.guard import (
    KEY_ENV,
    CryptoKeyError,
    Encryptor,
    IntegrityError,
    KeyRing,
    decrypt_file,
    encrypt_file,
    key_id,
    load_encryptor,
)


def test_round_trip_bytes_and_text() -> None:
    enc = Encryptor(KeyRing.generate())
    for plain in (b"", b"hello", os.urandom(10_000), "客户 13812345678".encode()):
        token = enc.encrypt(plain)
        assert plain not in token or not plain
        assert enc.decrypt(token) == plain
    assert enc.encrypt(b"same") != enc.encrypt(b"same")  # fresh nonce each time
    text = enc.encrypt_text("你好, world")
    assert text.isascii() and enc.decrypt_text(text) == "你好, world"


def test_wrong_key_is_a_clear_error_never_garbage() -> None:
    token = Encryptor(KeyRing.generate()).encrypt(b"secret data")
    other = Encryptor(KeyRing.generate())
    with pytest.raises(CryptoKeyError, match="not in this key ring"):
        other.decrypt(token)


@pytest.mark.parametrize("where", ["first-byte", "header-key-id", "nonce", "body", "tag", "truncated", "extended"])
def test_modified_token_fails_authentication(where: str) -> None:
    enc = Encryptor(KeyRing.generate())
    token = bytearray(enc.encrypt(b"the quick brown fox"))
    if where == "first-byte":
        token[0] ^= 1
    elif where == "header-key-id":
        token[6] ^= 1
    elif where == "nonce":
        token[15] ^= 1
    elif where == "body":
        token[-20] ^= 1
    elif where == "tag":
        token[-1] ^= 1
    elif where == "truncated":
        token = token[:-1]
    else:
        token += b"x"
    with pytest.raises((IntegrityError, CryptoKeyError)):
        enc.decrypt(bytes(token))


def test_associated_data_binds_the_context() -> None:
    enc = Encryptor(KeyRing.generate())
    token = enc.encrypt(b"x", b"monitor.texts")
    assert enc.decrypt(token, b"monitor.texts") == b"x"
    with pytest.raises(IntegrityError, match="associated data"):
        enc.decrypt(token, b"serve.feedback")
    with pytest.raises(IntegrityError, match="not an lmforge-encrypted token"):
        enc.decrypt(b"plain text that was never encrypted")


def test_rotation_keeps_old_data_readable_and_reencrypts() -> None:
    ring = KeyRing.generate()
    enc = Encryptor(ring)
    old_token = enc.encrypt(b"old record")
    old_id = ring.primary
    new_id = ring.rotate()
    assert new_id != old_id and ring.ids == [new_id, old_id]
    assert enc.decrypt(old_token) == b"old record"
    assert enc.needs_rotation(old_token)
    new_token = enc.reencrypt(old_token)
    assert not enc.needs_rotation(new_token) and enc.key_id_of(new_token) == new_id
    with pytest.raises(CryptoKeyError, match="primary key; rotate"):
        ring.revoke(new_id)
    ring.revoke(old_id)
    assert enc.decrypt(new_token) == b"old record"
    with pytest.raises(CryptoKeyError, match="was revoked"):
        enc.decrypt(old_token)


def test_keyring_file_round_trip_and_permissions(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    token = Encryptor(ring).encrypt(b"data")
    ring.rotate()
    path = tmp_path / "keys.json"
    ring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = KeyRing.load(path)
    assert loaded.ids == ring.ids
    assert load_encryptor(path).decrypt(token) == b"data"
    assert "key" not in repr(loaded).replace("KeyRing", "")  # ids only, no key material


def test_damaged_or_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(CryptoKeyError, match="Key file not found.*lmforge key encryption"):
        KeyRing.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    os.chmod(bad, 0o600)  # a key file others can read is refused before it is parsed
    with pytest.raises(CryptoKeyError, match="not a JSON key ring"):
        KeyRing.load(bad)
    ring = KeyRing.generate()
    ring.save(bad)
    data = json.loads(bad.read_text(encoding="utf-8"))
    secret = data["keys"][0]["key"]
    data["keys"][0]["key"] = secret[:-4] + "AAAA"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CryptoKeyError) as exc:
        KeyRing.load(bad)
    assert secret not in str(exc.value) and data["keys"][0]["key"] not in str(exc.value)
    ring.save(bad)
    os.chmod(bad, 0o644)
    # A key ring others can read is refused (it used to load with a warning): the fix is in the message.
    with pytest.raises(CryptoKeyError, match=rf"{re.escape(str(bad))} has mode 0644: group or other users.*"
                       rf"`chmod 600 {re.escape(str(bad))}`"):
        KeyRing.load(bad)


def test_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    raw1, raw2 = os.urandom(32), os.urandom(32)
    monkeypatch.setenv(KEY_ENV, base64.urlsafe_b64encode(raw2).decode())
    token = load_encryptor().encrypt(b"x")
    monkeypatch.setenv(KEY_ENV, f"{raw1.hex()},{base64.urlsafe_b64encode(raw2).decode()}")
    enc = load_encryptor()
    assert enc.keyring.primary == key_id(raw1) and enc.decrypt(token) == b"x"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(CryptoKeyError, match=f"{KEY_ENV} is not set"):
        load_encryptor()
    monkeypatch.setenv(KEY_ENV, "not-a-key-at-all")
    with pytest.raises(CryptoKeyError, match="not a 32-byte key") as exc:
        load_encryptor()
    assert "not-a-key-at-all" not in str(exc.value)


def test_encrypt_and_decrypt_files(tmp_path: Path) -> None:
    src = tmp_path / "train.jsonl"
    src.write_text('{"text": "a", "label": "b"}\n', encoding="utf-8")
    enc = Encryptor(KeyRing.generate())
    encrypt_file(src, tmp_path / "train.enc", enc)
    assert b'"text"' not in (tmp_path / "train.enc").read_bytes()
    decrypt_file(tmp_path / "train.enc", tmp_path / "back.jsonl", enc)
    assert (tmp_path / "back.jsonl").read_bytes() == src.read_bytes()
    with pytest.raises(CryptoKeyError, match="train.enc: The data was encrypted with key"):
        decrypt_file(tmp_path / "train.enc", tmp_path / "never.jsonl", Encryptor(KeyRing.generate()))
    assert not (tmp_path / "never.jsonl").exists()


def test_cli_key_lifecycle_is_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, log = tmp_path / "keys.json", tmp_path / "audit.jsonl"
    assert main(["key", "encryption", str(keys), "--audit-log", str(log)]) == 0
    first = KeyRing.load(keys).primary
    (tmp_path / "plain.txt").write_text("hello", encoding="utf-8")
    assert main(["encrypt", str(tmp_path / "plain.txt"), "-o", str(tmp_path / "c.bin"), "--key-file", str(keys)]) == 0
    assert main(["key", "encryption", str(keys), "--audit-log", str(log)]) == 0  # rotate
    assert main(["decrypt", str(tmp_path / "c.bin"), "-o", str(tmp_path / "p2.txt"), "--key-file", str(keys),
                 "--audit-log", str(log)]) == 0
    assert (tmp_path / "p2.txt").read_text(encoding="utf-8") == "hello"
    assert main(["key", "revoke", str(keys), first, "--audit-log", str(log)]) == 0
    capsys.readouterr()
    assert main(["decrypt", str(tmp_path / "c.bin"), "-o", str(tmp_path / "p3.txt"), "--key-file", str(keys)]) == 2
    assert "was revoked" in capsys.readouterr().err
    actions = [json.loads(line)["action"] for line in log.read_text(encoding="utf-8").splitlines()]
    assert actions == ["key.create", "key.rotate", "data.export", "key.revoke"]
    keyring_text = keys.read_text(encoding="utf-8")
    for entry in json.loads(keyring_text)["keys"]:
        assert entry["key"] not in log.read_text(encoding="utf-8")
