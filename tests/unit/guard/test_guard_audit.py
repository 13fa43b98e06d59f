"""Audit log: the hash chain finds any edited, removed, inserted or reordered record, and names it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import REPO

from lmforge.cli.__main__ import main
from lmforge.guard import AuditLog, CryptoKeyError, GuardError, IntegrityError


def make_log(tmp_path: Path, n: int = 5, key: bytes | None = None) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", key=key)
    actions = ["model.register", "model.activate", "key.create", "data.export", "model.rollback"]
    for i in range(n):
        log.append(f"user{i % 2}", actions[i % len(actions)], f"runs/r{i}", {"n": i})
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text(encoding="utf-8").splitlines(keepends=True)


def write(log: AuditLog, new_lines: list[str]) -> None:
    log.path.write_text("".join(new_lines), encoding="utf-8")


def test_append_and_verify(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    result = log.verify()
    assert (result.records, result.keyed, result.head_checked) == (5, False, True)
    records = log.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:], strict=False))
    assert {"time", "actor", "action", "target", "details"} <= set(records[0])


def edit_field(field: str, value: object):
    def tamper(log: AuditLog) -> None:
        rows = lines(log)
        record = json.loads(rows[2])
        record[field] = value
        rows[2] = json.dumps(record) + "\n"
        write(log, rows)
    return tamper


def delete(i: int):
    def tamper(log: AuditLog) -> None:
        rows = lines(log)
        del rows[i]
        write(log, rows)
    return tamper


def swap(i: int, j: int):
    def tamper(log: AuditLog) -> None:
        rows = lines(log)
        rows[i], rows[j] = rows[j], rows[i]
        write(log, rows)
    return tamper


def rehash_edit(log: AuditLog) -> None:
    """An attacker edits record 3 and recomputes its own hash (but not the chain after it)."""
    import hashlib

    rows = lines(log)
    record = json.loads(rows[2])
    record["actor"] = "mallory"
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    rows[2] = json.dumps(record) + "\n"
    write(log, rows)


def insert_copy(log: AuditLog) -> None:
    rows = lines(log)
    rows.insert(3, rows[2])
    write(log, rows)


TAMPERS = {
    "edit actor": (edit_field("actor", "mallory"), "seq 3 (line 3) was edited"),
    "edit action": (edit_field("action", "model.register"), "seq 3 (line 3) was edited"),
    "edit details": (edit_field("details", {"n": 99}), "seq 3 (line 3) was edited"),
    "edit time": (edit_field("time", "2020-01-01T00:00:00+00:00"), "seq 3 (line 3) was edited"),
    "edit seq": (edit_field("seq", 9), "seq 9 (line 3) was edited"),
    "edit hash": (edit_field("hash", "f" * 64), "seq 3 (line 3) was edited"),
    "edit and rehash": (rehash_edit, "seq 4 (line 4): its prev hash does not match"),
    "delete first": (delete(0), "seq 2 (line 1): expected seq 1; record 1 is missing"),
    "delete middle": (delete(2), "seq 4 (line 3): expected seq 3; record 3 is missing"),
    "delete last": (delete(4), "record(s) 5..5 were removed from the end"),
    "reorder": (swap(1, 2), "seq 3 (line 2): expected seq 2"),
    "reorder last two": (swap(3, 4), "seq 5 (line 4): expected seq 4"),
    "duplicate a record": (insert_copy, "seq 3 (line 4): expected seq 4"),
    "garbage line": (lambda log: write(log, [*lines(log)[:2], "oops\n", *lines(log)[2:]]), "line 3: not a JSON"),
    "truncated last line": (lambda log: log.path.write_bytes(log.path.read_bytes()[:-10]), "line 5: the last line is"),
    "blank line": (lambda log: write(log, [*lines(log)[:2], "\n", *lines(log)[2:]]), "line 3: blank line"),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampering_is_found_and_the_first_bad_record_named(tmp_path: Path, name: str) -> None:
    log = make_log(tmp_path)
    tamper, fragment = TAMPERS[name]
    tamper(log)
    with pytest.raises(IntegrityError) as exc:
        log.verify()
    assert fragment in str(exc.value)


def test_removed_log_and_head_mismatch(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.path.unlink()
    with pytest.raises(IntegrityError, match="log was removed"):
        log.verify()
    log = make_log(tmp_path / "b")
    rows = lines(log)
    log.head_path.write_text(json.dumps({"seq": 5, "hash": "0" * 64}), encoding="utf-8")
    with pytest.raises(IntegrityError, match="does not match the head hash"):
        log.verify()
    write(log, rows)


def test_keyed_log_resists_a_recomputed_chain(tmp_path: Path) -> None:
    key = b"k" * 32
    log = make_log(tmp_path, key=key)
    assert log.verify().keyed
    with pytest.raises(CryptoKeyError, match="HMAC-keyed"):
        AuditLog(log.path).verify()
    with pytest.raises(IntegrityError, match="was edited"):
        AuditLog(log.path, key=b"x" * 32).verify()
    # An attacker without the key rewrites the whole log as a plain chain: refused with the key.
    forged = AuditLog(tmp_path / "forged.jsonl")
    for record in log.records():
        forged.append(record["actor"], record["action"], record["target"], record["details"])
    forged.path.replace(log.path)
    forged.head_path.replace(log.head_path)
    with pytest.raises(IntegrityError, match="unkeyed record in a log verified with a key"):
        log.verify()


def test_secrets_in_details_are_redacted_and_actions_checked(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    record = log.append("ana", "key.create", "k1", {"key": "AAAA", "api_token": "t", "key_id": "abc",
                                                     "nested": {"password": "p"}, "path": Path("/x")})
    assert record["details"] == {"key": "[REDACTED]", "api_token": "[REDACTED]", "key_id": "abc",
                                 "nested": {"password": "[REDACTED]"}, "path": "/x"}
    assert "AAAA" not in log.path.read_text(encoding="utf-8")
    with pytest.raises(GuardError, match="dotted lower-case"):
        log.append("ana", "DROP TABLE", "x")


def test_append_refuses_a_damaged_tail(tmp_path: Path) -> None:
    log = make_log(tmp_path, 2)
    log.path.write_bytes(log.path.read_bytes()[:-3])
    with pytest.raises(IntegrityError, match="last line is incomplete"):
        log.append("a", "model.activate", "x")


def test_concurrent_appenders_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    code = textwrap.dedent(f"""
        from lmforge.guard import AuditLog
        log = AuditLog({str(path)!r})
        for i in range(25):
            log.append("worker", "model.activate", str(i))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert AuditLog(path).verify().records == 75


def test_cli_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                          ) -> None:
    log = make_log(tmp_path)
    assert main(["audit", "verify", str(log.path)]) == 0
    assert "5 records, chain intact" in capsys.readouterr().out
    delete(1)(log)
    assert main(["audit", "verify", str(log.path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "record 2 is missing" in err
    monkeypatch.delenv("LMFORGE_AUDIT_LOG", raising=False)
    assert main(["audit", "verify"]) == 2
    assert "LMFORGE_AUDIT_LOG" in capsys.readouterr().err


KEY = b"k" * 32


def truncate(log: AuditLog, keep: int) -> None:
    write(log, lines(log)[:keep])


def test_keyed_log_truncated_with_its_head_deleted_fails(tmp_path: Path) -> None:
    log = make_log(tmp_path, key=KEY)
    truncate(log, 3)
    log.head_path.unlink()
    with pytest.raises(IntegrityError, match="head file audit.jsonl.head is missing") as exc:
        log.verify()
    assert exc.value.tail is True
    # The same cut on an unkeyed log cannot be detected: today's behaviour, said in the result.
    plain = make_log(tmp_path / "plain")
    truncate(plain, 3)
    plain.head_path.unlink()
    assert (plain.verify().records, plain.verify().head_checked) == (3, False)


def test_keyed_log_truncated_with_a_forged_head_fails(tmp_path: Path) -> None:
    """Whoever cuts the log can read the new last hash; without the key the head's MAC cannot follow."""
    log = make_log(tmp_path, key=KEY)
    truncate(log, 3)
    last = log.records()[-1]
    for forged in ({"seq": 3, "hash": last["hash"]},  # an unkeyed head, as lmforge wrote before
                   {"seq": 3, "hash": last["hash"], "mac": "0" * 64},
                   {"seq": 3, "hash": last["hash"], "mac": last["hash"]}):  # a record hash is no head MAC
        log.head_path.write_text(json.dumps(forged), encoding="utf-8")
        with pytest.raises(IntegrityError, match="head file audit.jsonl.head has") as exc:
            log.verify()
        assert exc.value.tail is True, forged
    # A head keyed with another key is no better.
    other = make_log(tmp_path / "other", n=3, key=b"o" * 32)
    other.head_path.replace(log.head_path)
    with pytest.raises(IntegrityError, match="does not match the key"):
        log.verify()


def test_keyed_log_intact_verifies_and_its_head_follows_the_chain(tmp_path: Path) -> None:
    log = make_log(tmp_path, key=KEY)
    result = log.verify()
    assert (result.records, result.keyed, result.head_checked) == (5, True, True)
    head = json.loads(log.head_path.read_text(encoding="utf-8"))
    assert set(head) == {"seq", "hash", "mac"} and head["seq"] == 5
    assert "mac" not in json.loads(make_log(tmp_path / "plain").head_path.read_text(encoding="utf-8"))
    # A keyed head kept from before the last records (a cut made by restoring it) is behind.
    old_head = log.head_path.read_bytes()
    log.append("ana", "model.activate", "runs/r9")
    log.head_path.write_bytes(old_head)
    with pytest.raises(IntegrityError, match="seq 6 and later are not in the head"):
        log.verify()


def test_cli_audit_verify_exits_1_on_a_missing_or_forged_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMFORGE_AUDIT_KEY", KEY.decode())
    log = make_log(tmp_path, key=KEY)
    assert main(["audit", "verify", str(log.path)]) == 0
    assert "5 records, chain intact (HMAC-keyed), head matches" in capsys.readouterr().out
    truncate(log, 3)
    assert main(["audit", "verify", str(log.path)]) == 1  # the head still says 5
    err = capsys.readouterr().err
    assert "record(s) 4..5 were removed from the end" in err
    log.head_path.unlink()
    assert main(["audit", "verify", str(log.path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "head file audit.jsonl.head is missing" in err
    log.head_path.write_text(json.dumps({"seq": 3, "hash": log.records()[-1]["hash"]}), encoding="utf-8")
    assert main(["audit", "verify", str(log.path)]) == 1
    assert "has no MAC" in capsys.readouterr().err
    # A broken chain stays an error (exit 2), as before.
    delete(0)(log)
    assert main(["audit", "verify", str(log.path)]) == 2


def test_cli_audit_verify_says_an_unkeyed_log_cannot_show_truncation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LMFORGE_AUDIT_KEY", raising=False)
    log = make_log(tmp_path)
    truncate(log, 3)
    log.head_path.unlink()
    assert main(["audit", "verify", str(log.path)]) == 0
    out = capsys.readouterr().out
    assert "3 records" in out and "cannot be detected" in out and "LMFORGE_AUDIT_KEY" in out


def test_log_and_head_are_created_owner_only(tmp_path: Path) -> None:
    log = make_log(tmp_path, n=2)
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.head_path.stat().st_mode) == 0o600
    # An existing log keeps the mode its admin chose, and the head follows it.
    shared = tmp_path / "shared.jsonl"
    shared.touch()
    os.chmod(shared, 0o640)
    AuditLog(shared).append("ana", "model.activate", "x")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(AuditLog(shared).head_path.stat().st_mode) == 0o640 & ~umask
