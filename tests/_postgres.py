"""The store suites' databases: SQLite in the test's folder, or a fresh PostgreSQL database per test.

PostgreSQL is the server named by ``$LMFORGE_TEST_POSTGRES_URL`` (``.ci/run`` starts a throwaway
one and sets it). The URL's role must be allowed to create databases: every test gets its own,
dropped afterwards, so the tests stay independent. Without the variable the PostgreSQL cases
skip, naming it (in CI a skip is a failure, see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ENV = "LMFORGE_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def server_url() -> str:
    """The PostgreSQL server URL from ``$LMFORGE_TEST_POSTGRES_URL``; skips the test without it."""
    url = os.environ.get(ENV, "").strip()
    if not url:
        pytest.skip(
            f"no PostgreSQL server: set {ENV}=postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
            "(a role that may create databases; .ci/run starts one)"
        )
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'lmforge[postgres]')")
    return url


def _url(url: str):  # -> sqlalchemy.URL, with the driver lmforge uses for postgresql://
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return parsed.set(drivername="postgresql+psycopg") if parsed.drivername == "postgresql" else parsed


@contextmanager
def fresh_postgres_database(url: str) -> Iterator[str]:
    """A new, empty database on the server at ``url``, for one test; dropped (connections and all) after it."""
    import sqlalchemy as sa

    server = _url(url)
    name = f"lmforge_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:  # FORCE: a pool the test left open must not keep it alive
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def database(backend: str, sqlite_file: Path) -> Iterator[str]:
    """A database URL for one test: ``sqlite_file`` (not created yet), or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_file}"
    elif backend == "postgresql":
        with fresh_postgres_database(server_url()) as url:
            yield url
    else:
        raise ValueError(f"Unknown test database backend {backend!r}. Available: {', '.join(BACKENDS)}")


def postgres_rows_text(url: str) -> str:
    """Every row of every table in the PostgreSQL database at ``url``, as PostgreSQL's own text form.

    The PostgreSQL counterpart of reading a SQLite file's bytes: what the database keeps, whatever
    the column types (JSON, text, numbers).
    """
    import sqlalchemy as sa

    engine = sa.create_engine(_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
            return "\n".join(
                str(row)
                for table in list(tables)
                for row in conn.execute(sa.text(f"SELECT t::text FROM {table} t")).scalars()
            )
    finally:
        engine.dispose()
