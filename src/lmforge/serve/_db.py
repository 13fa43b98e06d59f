"""The registry database: tables of models, versions, their history and API keys (SQLAlchemy Core).

SQLite in the state folder by default; any SQLAlchemy URL works, e.g.
``postgresql+psycopg://user@host/lmforge`` so several servers (or Ray ingress processes) share
one registry. Table names start with ``serve_`` so the database can be shared with the
monitoring store. Times are ISO-8601 UTC strings, details JSON text: portable across engines.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from lmforge._extras import require
from lmforge._sql import open_engine
from lmforge.errors import ConfigError

__all__ = ["Tables", "connect", "now"]

_PURPOSE = "The model registry and API keys"


def now() -> str:
    """The current UTC time, ISO-8601 with microseconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


class Tables:
    """The four tables, bound to one ``MetaData``."""

    def __init__(self) -> None:
        sa = require("sqlalchemy", extra="serve", purpose=_PURPOSE)
        self.metadata = sa.MetaData()
        self.models = sa.Table(
            "serve_models",
            self.metadata,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("updated_at", sa.String(40), nullable=False),
            sa.Column("active_version", sa.Integer, nullable=True),
            sa.Column("canary_version", sa.Integer, nullable=True),
            sa.Column("canary_percent", sa.Float, nullable=False, default=0.0),
        )
        self.versions = sa.Table(
            "serve_model_versions",
            self.metadata,
            sa.Column("model", sa.String(64), sa.ForeignKey("serve_models.name"), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("run_path", sa.Text, nullable=False),
            sa.Column("variant", sa.String(128), nullable=True),
            sa.Column("manifest_sha256", sa.String(64), nullable=False),
            sa.Column("signed", sa.Boolean, nullable=False),
            sa.Column("key_id", sa.String(64), nullable=True),
            sa.Column("labels", sa.Text, nullable=False),  # JSON list
            sa.Column("status", sa.String(16), nullable=False),  # registered | active | retired | rolled_back
            sa.Column("registered_at", sa.String(40), nullable=False),
            sa.Column("registered_by", sa.String(128), nullable=False),
        )
        self.events = sa.Table(
            "serve_model_events",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("model", sa.String(64), nullable=False, index=True),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("version", sa.Integer, nullable=True),
            sa.Column("from_version", sa.Integer, nullable=True),
            sa.Column("actor", sa.String(128), nullable=False),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("details", sa.Text, nullable=False),  # JSON object
        )
        self.api_keys = sa.Table(
            "serve_api_keys",
            self.metadata,
            sa.Column("key_id", sa.String(16), primary_key=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("token_sha256", sa.String(64), nullable=False),
            sa.Column("rate_per_s", sa.Float, nullable=True),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("created_by", sa.String(128), nullable=False),
            sa.Column("revoked_at", sa.String(40), nullable=True),
        )


def connect(url: str) -> tuple[Any, Tables]:
    """An engine on ``url`` (see :func:`lmforge._sql.open_engine`) with every table created.

    Raises:
        ConfigError: a malformed URL or an unreachable database (the URL's password is not shown).
        MissingExtraError: the URL names a driver that is not installed (e.g. psycopg).
    """
    sa = require("sqlalchemy", extra="serve", purpose=_PURPOSE)
    engine = open_engine(
        url, what="Registry", example="sqlite:///.lmforge/registry.db", purpose=_PURPOSE, foreign_keys=True
    )
    shown = engine.url.render_as_string(hide_password=True)
    tables = Tables()
    try:
        tables.metadata.create_all(engine)
    except sa.exc.OperationalError as exc:
        raise ConfigError(
            f"Cannot open the registry database {shown}: {str(exc.orig).splitlines()[0]}"
        ) from None
    return engine, tables
