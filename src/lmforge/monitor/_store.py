"""The prediction store: predictions, feedback, drift checks, alert events and errors (SQLAlchemy Core).

SQLite by default (WAL journal, so the dashboard reads while the writer writes), PostgreSQL
by URL with the ``postgres`` extra. Only the monitor's writer process inserts predictions;
feedback is written by the request that brings it. Timestamps are Unix seconds (float).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from lmforge._extras import require
from lmforge._sql import open_engine
from lmforge.monitor._records import token_counts

__all__ = ["Store", "redact_url"]

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """The URL without its password (for logs and the summary)."""
    sa = require("sqlalchemy", extra="serve", purpose="The prediction store")
    try:
        return str(sa.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:  # a malformed URL is reported by create_engine, not here
        return "<unparsable url>"


def _tables(sa: Any) -> tuple[Any, dict[str, Any]]:
    """Long because it is the whole schema in one place, one column per line."""
    md = sa.MetaData()
    name = sa.String(200)
    t = {
        "predictions": sa.Table(
            "predictions",
            md,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("model", name, nullable=False),
            sa.Column("version", name, nullable=False),
            sa.Column("text_hash", sa.String(64), nullable=False),
            sa.Column("text", sa.Text, nullable=True),
            sa.Column("text_policy", sa.String(32), nullable=False),
            sa.Column("label", name, nullable=False),
            sa.Column("confidence", sa.Float, nullable=False),
            sa.Column("scores", sa.JSON, nullable=False),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("key_id", sa.String(32), nullable=True),
            # A generation: its answer (under the text policy, as ``text`` holds its prompt) and token counts.
            sa.Column("output", sa.Text, nullable=True),
            sa.Column("prompt_tokens", sa.Integer, nullable=True),
            sa.Column("completion_tokens", sa.Integer, nullable=True),
            sa.Index("ix_predictions_model_version_ts", "model", "version", "ts"),
            sa.Index("ix_predictions_ts", "ts"),
        ),
        "feedback": sa.Table(
            "feedback",
            md,
            sa.Column("prediction_id", sa.String(64), primary_key=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("label", name, nullable=False),
            sa.Column("predicted", name, nullable=False),
            sa.Column("correct", sa.Boolean, nullable=False),
            # Copied from the prediction, so live accuracy reads this table alone.
            sa.Column("model", name, nullable=False),
            sa.Column("version", name, nullable=False),
            sa.Column("prediction_ts", sa.Float, nullable=False),
            sa.Column("key_id", sa.String(32), nullable=True),
            sa.Column("correction", sa.Text, nullable=True),  # a generation's corrected answer, as text is
            sa.Index("ix_feedback_model_version_pts", "model", "version", "prediction_ts"),
        ),
        "drift": sa.Table(
            "drift",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("model", name, nullable=False),
            sa.Column("version", name, nullable=False),
            sa.Column("detector", sa.String(100), nullable=False),
            sa.Column("statistic", sa.Float, nullable=True),
            sa.Column("p_value", sa.Float, nullable=True),
            sa.Column("threshold", sa.Float, nullable=True),
            sa.Column("drift", sa.Boolean, nullable=True),
            sa.Column("n", sa.Integer, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("detail", sa.JSON, nullable=False),
            sa.Index("ix_drift_model_version_ts", "model", "version", "ts"),
        ),
        "alerts": sa.Table(
            "alerts",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("rule", sa.String(300), nullable=False),
            sa.Column("metric", sa.String(300), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("value", sa.Float, nullable=True),
            sa.Column("threshold", sa.Float, nullable=False),
            sa.Column("model", name, nullable=False),
            sa.Column("version", name, nullable=False),
            sa.Index("ix_alerts_ts", "ts"),
        ),
        "errors": sa.Table(
            "errors",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("model", name, nullable=False),
            sa.Column("version", name, nullable=False),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Index("ix_errors_ts", "ts"),
        ),
    }
    return md, t


class Store:
    """Tables and queries of the monitor (thread-safe: each call takes its own connection)."""

    def __init__(self, url: str) -> None:
        self.sa = require("sqlalchemy", extra="serve", purpose="The prediction store")
        self.url = url
        self.engine = open_engine(
            url, what="Monitor", example="sqlite:///.lmforge/monitor.db", purpose="The prediction store"
        )
        self.metadata, self.t = _tables(self.sa)
        self.metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added since a store was created (``key_id``, generation's), added to its tables in place."""
        inspector = self.sa.inspect(self.engine)
        added = (("predictions", "key_id"), ("feedback", "key_id"), ("predictions", "output"),
                 ("predictions", "prompt_tokens"), ("predictions", "completion_tokens"), ("feedback", "correction"))
        for table_name, column in added:
            have = {c["name"] for c in inspector.get_columns(table_name)}
            if column in have:
                continue
            col = self.t[table_name].c[column]
            ddl = f"ALTER TABLE {table_name} ADD COLUMN {column} {col.type.compile(self.engine.dialect)}"
            with self.engine.begin() as conn:
                conn.execute(self.sa.text(ddl))
            log.info("monitor store: added column %s.%s", table_name, column)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ----------------------------------------------------------------------------
    def _insert(self, table: Any) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            return sqlite.insert(table)
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        return self.sa.insert(table)

    def insert_predictions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert predictions; an id already stored (a retried request) is skipped, not an error."""
        if not rows:
            return
        stmt = self._insert(self.t["predictions"])
        if hasattr(stmt, "on_conflict_do_nothing"):
            stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
        with self.engine.begin() as conn:
            conn.execute(stmt, list(rows))

    def upsert_feedback(self, row: dict[str, Any]) -> None:
        """Store feedback; a second feedback on the same prediction replaces the first."""
        table = self.t["feedback"]
        stmt = self._insert(table)
        with self.engine.begin() as conn:
            if hasattr(stmt, "on_conflict_do_update"):
                stmt = stmt.values(**row)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["prediction_id"],
                        set_={k: stmt.excluded[k] for k in row if k != "prediction_id"},
                    )
                )
            else:
                conn.execute(table.delete().where(table.c.prediction_id == row["prediction_id"]))
                conn.execute(table.insert().values(**row))

    def prune(self, before_ts: float | None, max_rows: int | None) -> int:
        """Delete rows older than ``before_ts`` (every table) and predictions beyond the newest
        ``max_rows``; how many predictions were deleted."""
        p = self.t["predictions"]
        deleted = 0
        with self.engine.begin() as conn:
            if before_ts is not None:
                deleted += conn.execute(p.delete().where(p.c.ts < before_ts)).rowcount or 0
                for name in ("feedback", "drift", "alerts", "errors"):
                    table = self.t[name]
                    column = table.c.prediction_ts if name == "feedback" else table.c.ts
                    conn.execute(table.delete().where(column < before_ts))
            if max_rows is not None:
                cutoff = conn.execute(
                    self.sa.select(p.c.ts).order_by(p.c.ts.desc()).offset(max_rows).limit(1)
                ).scalar()
                if cutoff is not None:  # more than max_rows: drop those at or before the first one over
                    deleted += conn.execute(p.delete().where(p.c.ts <= cutoff)).rowcount or 0
        return deleted

    def count_predictions(self) -> int:
        p = self.t["predictions"]
        with self.engine.connect() as conn:
            return int(conn.execute(self.sa.select(self.sa.func.count()).select_from(p)).scalar() or 0)

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows to ``drift``, ``alerts`` or ``errors``."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self.t[table].insert(), list(rows))

    # -- reads -----------------------------------------------------------------------------
    def get_prediction(self, prediction_id: str) -> dict[str, Any] | None:
        p = self.t["predictions"]
        with self.engine.connect() as conn:
            row = conn.execute(
                self.sa.select(p.c.model, p.c.version, p.c.label, p.c.ts, p.c.key_id, p.c.completion_tokens)
                .where(p.c.id == prediction_id)
            ).first()
        return dict(row._mapping) if row else None

    def get_feedback(self, prediction_id: str) -> dict[str, Any] | None:
        """The stored feedback of a prediction (``label``, ``key_id``), or None."""
        f = self.t["feedback"]
        with self.engine.connect() as conn:
            row = conn.execute(
                self.sa.select(f.c.label, f.c.key_id).where(f.c.prediction_id == prediction_id)
            ).first()
        return dict(row._mapping) if row else None

    def feedback_keys(self, model: str, version: str, window: int) -> int:
        """Distinct API keys among the last ``window`` feedback labels of a version (unknown keys count once)."""
        f = self.t["feedback"]
        recent = (
            self.sa.select(f.c.key_id)
            .where(f.c.model == model, f.c.version == version)
            .order_by(f.c.prediction_ts.desc())
            .limit(window)
            .subquery()
        )
        q = self.sa.select(self.sa.func.count(self.sa.distinct(self.sa.func.coalesce(recent.c.key_id, ""))))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def labeled(self, model: str, version: str, window: int) -> list[tuple[str, str]]:
        """``(predicted, true)`` label pairs of the last ``window`` predictions with feedback (newest first)."""
        f = self.t["feedback"]
        q = (
            self.sa.select(f.c.predicted, f.c.label)
            .where(f.c.model == model, f.c.version == version)
            .order_by(f.c.prediction_ts.desc())
            .limit(window)
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(q)]

    def counts(self) -> list[dict[str, Any]]:
        """Per model version: stored predictions, first and last time, feedback count; a generative
        version's prompt and generated tokens and tokens/s (generated tokens over the time its answers took)."""
        p, f = self.t["predictions"], self.t["feedback"]
        sa = self.sa
        gen_ms = sa.func.sum(sa.case((p.c.completion_tokens.is_not(None), p.c.latency_ms), else_=0.0))
        with self.engine.connect() as conn:
            preds = conn.execute(
                sa.select(
                    p.c.model, p.c.version, sa.func.count(), sa.func.min(p.c.ts), sa.func.max(p.c.ts),
                    sa.func.sum(p.c.prompt_tokens), sa.func.sum(p.c.completion_tokens), gen_ms,
                ).group_by(p.c.model, p.c.version)
            ).all()
            fb = dict(
                ((r[0], r[1]), r[2])
                for r in conn.execute(
                    sa.select(f.c.model, f.c.version, sa.func.count()).group_by(f.c.model, f.c.version)
                )
            )
        out = [
            {
                "model": m,
                "version": v,
                "predictions": n,
                "first_ts": lo,
                "last_ts": hi,
                "feedback": fb.pop((m, v), 0),
                **token_counts(prompt, generated, ms),
            }
            for m, v, n, lo, hi, prompt, generated, ms in preds
        ]
        out += [
            {"model": m, "version": v, "predictions": 0, "first_ts": None, "last_ts": None, "feedback": n,
             **token_counts(None, None, None)}
            for (m, v), n in fb.items()
        ]
        return sorted(out, key=lambda r: (r["model"], r["version"]))

    def count(self, table: str = "predictions") -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(self.sa.select(self.sa.func.count()).select_from(self.t[table])).scalar_one()
            )

    def _since(
        self,
        table: str,
        columns: Sequence[str],
        since: float,
        model: str | None,
        version: str | None,
        ts_column: str = "ts",
        limit: int = 200_000,
    ) -> list[tuple[Any, ...]]:
        t = self.t[table]
        ts = t.c[ts_column]
        q = self.sa.select(*[t.c[c] for c in columns]).where(ts >= since)
        if model is not None:
            q = q.where(t.c.model == model)
        if version is not None:
            q = q.where(t.c.version == version)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(ts.desc()).limit(limit)).all()
        return [tuple(r) for r in reversed(rows)]

    def predictions_since(
        self, since: float, model: str | None = None, version: str | None = None, limit: int = 200_000
    ) -> list[tuple[float, float, str, float]]:
        """``(ts, latency_ms, label, confidence)`` oldest first (the newest ``limit`` rows)."""
        return self._since(
            "predictions", ("ts", "latency_ms", "label", "confidence"), since, model, version, limit=limit
        )

    def bucket_counts(
        self, start: float, width: float, n: int, model: str | None = None, version: str | None = None
    ) -> list[tuple[int, str, int]]:
        """``(bucket, label, count)`` of predictions since ``start`` in buckets of ``width`` s, counted in SQL.

        Exact at any volume (the rows never leave the database), unlike :meth:`predictions_since`.
        """
        p = self.t["predictions"]
        sa = self.sa
        offset = (p.c.ts - start) / width
        if self.engine.dialect.name == "sqlite":  # CAST truncates there; floor() is not always compiled in
            bucket = sa.cast(offset, sa.Integer).label("bucket")
        else:  # PostgreSQL's CAST rounds
            bucket = sa.cast(sa.func.floor(offset), sa.Integer).label("bucket")
        q = sa.select(bucket, p.c.label, sa.func.count()).where(p.c.ts >= start)
        if model is not None:
            q = q.where(p.c.model == model)
        if version is not None:
            q = q.where(p.c.version == version)
        with self.engine.connect() as conn:
            rows = conn.execute(q.group_by(bucket, p.c.label)).all()
        return [(min(max(int(b), 0), n - 1), str(label), int(c)) for b, label, c in rows]

    def feedback_since(
        self, since: float, model: str | None = None, version: str | None = None
    ) -> list[tuple[float, bool]]:
        """``(prediction_ts, correct)`` oldest first."""
        return self._since(
            "feedback", ("prediction_ts", "correct"), since, model, version, ts_column="prediction_ts"
        )

    def errors_since(
        self, since: float, model: str | None = None, version: str | None = None
    ) -> list[tuple[float, int]]:
        return self._since("errors", ("ts", "status"), since, model, version)

    def drift_since(
        self, since: float, model: str | None = None, version: str | None = None
    ) -> list[tuple[Any, ...]]:
        """``(ts, model, version, detector, statistic, threshold, drift)`` oldest first."""
        return self._since(
            "drift",
            ("ts", "model", "version", "detector", "statistic", "threshold", "drift"),
            since,
            model,
            version,
        )

    def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        a = self.t["alerts"]
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(a).order_by(a.c.ts.desc(), a.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def rows(self, table: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Raw rows of a table (newest first), for inspection and tests."""
        t = self.t[table]
        order = t.c.ts.desc() if "ts" in t.c else None
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(t).order_by(order).limit(limit)).all()
        return [dict(r._mapping) for r in rows]
