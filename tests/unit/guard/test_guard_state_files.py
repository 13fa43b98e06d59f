"""State files are created owner-only (0600) and key files others can read are refused.

The databases (``registry.db``, ``monitor.db``, with SQLite's -wal and -shm side files), the
audit log and its head (see test_guard_audit.py) and key rings hold data or secrets a
machine's other users must not read. Files that already exist keep the mode they have.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from lmforge._sql import open_engine
from lmforge.cli.__main__ import main
from lmforge.guard import CryptoKeyError, KeyRing, load_encryptor

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_through(url: str, foreign_keys: bool = False) -> None:
    """Open, write one row and keep the connection open, so the -wal and -shm files exist."""
    sa = pytest.importorskip("sqlalchemy")
    engine = open_engine(url, what="Test", example="sqlite:///x.db", purpose="test", foreign_keys=foreign_keys)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:  # an open reader keeps the WAL from being checkpointed away
            conn.execute(sa.text("SELECT * FROM t")).fetchall()
            for side in ("-wal", "-shm"):
                side_file = Path(url.removeprefix("sqlite:///") + side)
                assert side_file.is_file(), side_file
                assert mode(side_file) == 0o600, (side_file, oct(mode(side_file)))
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", ["registry.db", "monitor.db"])
def test_new_sqlite_files_are_owner_only_with_their_wal_and_shm(tmp_path: Path, name: str) -> None:
    db = tmp_path / "state" / name  # the folder is created too
    write_through(f"sqlite:///{db}", foreign_keys=name == "registry.db")
    assert mode(db) == 0o600


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    sqlite3 = pytest.importorskip("sqlite3")
    db = tmp_path / "shared.db"
    sqlite3.connect(db).close()
    os.chmod(db, 0o640)  # an admin chose to share it with a group
    sa = pytest.importorskip("sqlalchemy")
    engine = open_engine(f"sqlite:///{db}", what="Test", example="sqlite:///x.db", purpose="test")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()
    assert mode(db) == 0o640


def test_the_monitor_store_is_created_owner_only(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from lmforge.monitor import Monitor, MonitorSettings

    db = tmp_path / "db" / "monitor.db"
    with Monitor(MonitorSettings(url=f"sqlite:///{db}", flush_interval_s=0.05), ["neg", "pos"]):
        pass
    assert mode(db) == 0o600


def test_key_rings_are_saved_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeyRing.generate().save(path)
    assert mode(path) == 0o600


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o620], ids=lambda m: f"{m:04o}")
def test_a_key_ring_others_can_access_is_refused_with_the_fix(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "keys.json"
    KeyRing.generate().save(path)
    os.chmod(path, loose)
    expected = rf"{re.escape(str(path))} has mode {loose:04o}.*`chmod 600 {re.escape(str(path))}`"
    with pytest.raises(CryptoKeyError, match=expected):
        KeyRing.load(path)
    with pytest.raises(CryptoKeyError, match=expected):
        load_encryptor(path)
    assert mode(path) == loose  # refused, not silently chmod'ed
    os.chmod(path, 0o600)
    assert KeyRing.load(path).primary


def test_cli_refuses_a_readable_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cryptography")
    keys, data = tmp_path / "keys.json", tmp_path / "data.txt"
    KeyRing.generate().save(keys)
    data.write_text("secret", encoding="utf-8")
    os.chmod(keys, 0o644)
    assert main(["encrypt", str(data), "--output", str(tmp_path / "x.enc"), "--key-file", str(keys)]) == 2
    err = capsys.readouterr().err
    assert "mode 0644" in err and f"chmod 600 {keys}" in err
    assert not (tmp_path / "x.enc").exists()
