"""One way to open the SQLAlchemy databases lmforge keeps: the serving registry and the monitor store.

SQLite by default (its folder is created; WAL journal, so readers never block the writer and
the writer never blocks them; a 30 s busy timeout; usable from worker threads). A new SQLite
file is created readable by its owner only (0600), since the stores hold predictions and
input texts; SQLite gives the -wal and -shm files the database file's mode, and an existing
file keeps the mode it has. PostgreSQL by URL with the ``postgres`` extra (``postgresql://``
means psycopg 3, which that extra installs), any other SQLAlchemy URL as given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import ConfigError, MissingExtraError

__all__ = ["open_engine"]


def _create_private(path: Path) -> None:
    """Create an empty SQLite file with mode 0600 unless it exists (SQLite reads 0 bytes as a new database)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # its owner chose its mode; it is not changed behind their back
    os.close(fd)


def open_engine(url: str, *, what: str, example: str, purpose: str, foreign_keys: bool = False) -> Any:
    """A SQLAlchemy engine on ``url``.

    Args:
        url: A SQLAlchemy database URL.
        what: What the database is, for messages (e.g. "Registry").
        example: A SQLite URL to suggest when ``url`` does not parse.
        purpose: What needs the database, for a missing-package message.
        foreign_keys: Have SQLite enforce foreign keys (it does not by default).

    Raises:
        ConfigError: ``url`` is not a database URL (its password is never shown).
        MissingExtraError: the URL names a driver that is not installed (e.g. psycopg).
    """
    sa = require("sqlalchemy", extra="serve", purpose=purpose)
    try:
        parsed = sa.engine.make_url(url)
    except Exception:  # SQLAlchemy raises ArgumentError, ValueError... for a bad URL
        raise ConfigError(
            f"{what} URL {url.split('@')[-1]!r} is not a database URL such as {example} or "
            "postgresql+psycopg://user@host/db."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            _create_private(Path(db).expanduser())
        # Worker threads use the pool's connections; sqlite3's own thread check is for shared
        # connections, which the pool never makes (except the one in-memory database below).
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        if not db or db == ":memory:":
            kwargs["poolclass"] = sa.pool.StaticPool  # one shared connection, or each sees its own empty DB
        engine = sa.create_engine(parsed, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a process crash
            if foreign_keys:
                cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    options: dict[str, Any] = {}
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # the postgres extra installs psycopg 3, not psycopg2
            parsed = parsed.set(drivername="postgresql+psycopg")
        options["pool_pre_ping"] = True
    try:
        return sa.create_engine(parsed, **options)
    except ImportError as exc:  # the URL's driver is not installed
        extra = "postgres" if backend == "postgresql" else "serve"
        raise MissingExtraError(str(exc.name or parsed.drivername), extra, purpose) from None
