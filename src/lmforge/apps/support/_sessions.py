"""The bot's sessions: a turn counter and a count of consecutive failures per session id.

One rule (:func:`next_failures`) and two stores that apply it:

- :class:`MemorySessions`: one process's dictionary (``lmforge bot ask``, ``bot eval``);
- :class:`SqlSessions`: tables ``bot_sessions`` and ``bot_turns`` in a SQLAlchemy database
  (``lmforge serve`` lends its registry's: SQLite or PostgreSQL), created if missing, so a
  session's count survives a restart and is shared by every worker of one registry. A step is
  one transaction that starts by writing the session's row, so two workers answering turns of
  one session take turns (SQLite's write lock, PostgreSQL's row lock) and never lose a count.
  ``bot_turns`` keeps each turn's outcome, with its text and answer PII-masked
  (:func:`lmforge.guard.redact`) before they are written.
"""

from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lmforge._extras import require
from lmforge.guard import redact

if TYPE_CHECKING:
    from lmforge.apps.support._bot import Turn

__all__ = ["MemorySessions", "SessionStep", "SessionStore", "SqlSessions", "next_failures"]

_PURPOSE = "Keeping the bot's sessions in the server's database"
SESSION_ID_CHARS = 128


@dataclass(frozen=True)
class SessionStep:
    """What one turn did to its session."""

    turn: int
    """The turn's number in the session, from 1."""
    escalate: bool
    """True when this failure made ``after_failures`` consecutive ones (the count restarts at 0)."""


def next_failures(previous: int, failed: bool, after_failures: int) -> tuple[int, bool]:
    """The failure count kept after a turn, and whether the turn escalates for repeated failures.

    A success resets the count; the ``after_failures``-th consecutive failure escalates and
    resets it (so the next failure counts from 1 again); ``after_failures`` 0 never escalates.
    """
    count = previous + 1 if failed else 0
    if after_failures and count >= after_failures:
        return 0, True
    return count, False


class SessionStore(Protocol):
    def step(self, session_id: str, failed: bool, after_failures: int) -> SessionStep:
        """Count one turn of ``session_id`` (atomically) and say what it did."""
        ...


class MemorySessions:
    """Sessions in this process's memory (lost when it exits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[int, int]] = {}  # session id -> (turns, failures)

    def step(self, session_id: str, failed: bool, after_failures: int) -> SessionStep:
        with self._lock:
            turns, failures = self._rows.get(session_id, (0, 0))
            failures, escalate = next_failures(failures, failed, after_failures)
            self._rows[session_id] = (turns + 1, failures)
            return SessionStep(turns + 1, escalate)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


class SqlSessions:
    """Sessions in a SQLAlchemy database (the tables are created if missing)."""

    def __init__(self, engine: Any) -> None:
        sa = self._sa = require("sqlalchemy", extra="serve", purpose=_PURPOSE)
        self.engine = engine
        self.metadata = sa.MetaData()
        self.sessions = sa.Table(
            "bot_sessions",
            self.metadata,
            sa.Column("session_id", sa.String(SESSION_ID_CHARS), primary_key=True),
            sa.Column("turns", sa.Integer, nullable=False),
            sa.Column("failures", sa.Integer, nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("updated_at", sa.String(40), nullable=False),
        )
        self.turns = sa.Table(
            "bot_turns",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("session_id", sa.String(SESSION_ID_CHARS), nullable=False, index=True),
            sa.Column("turn", sa.Integer, nullable=False),
            sa.Column("at", sa.String(40), nullable=False, index=True),
            sa.Column("text", sa.Text, nullable=False),  # PII-masked
            sa.Column("intent", sa.String(128), nullable=True),
            sa.Column("out_of_scope", sa.Boolean, nullable=False),
            sa.Column("escalate", sa.Boolean, nullable=False),
            sa.Column("reason", sa.String(32), nullable=False),
            sa.Column("answer", sa.Text, nullable=True),  # PII-masked
        )
        self.metadata.create_all(engine)

    def _insert_missing(self, conn: Any, session_id: str, at: str) -> None:
        """Add the session's row unless it exists (two workers may both try: neither fails)."""
        values = {"session_id": session_id, "turns": 0, "failures": 0, "created_at": at, "updated_at": at}
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = require(f"sqlalchemy.dialects.{dialect}", extra="serve", purpose=_PURPOSE).insert
            conn.execute(insert(self.sessions).values(**values).on_conflict_do_nothing())
            return
        sa = self._sa
        exists = conn.execute(sa.select(self.sessions.c.turns).where(self.sessions.c.session_id == session_id)).first()
        if exists is None:
            conn.execute(self.sessions.insert().values(**values))

    def step(self, session_id: str, failed: bool, after_failures: int) -> SessionStep:
        sa, t = self._sa, self.sessions
        at = _now()
        mine = t.c.session_id == session_id
        with self.engine.begin() as conn:
            self._insert_missing(conn, session_id, at)
            # Written first: the rest of this transaction holds the row (or SQLite's write lock).
            conn.execute(t.update().where(mine).values(turns=t.c.turns + 1, updated_at=at))
            turns, failures = conn.execute(sa.select(t.c.turns, t.c.failures).where(mine)).one()
            kept, escalate = next_failures(int(failures), failed, after_failures)
            if kept != failures:
                conn.execute(t.update().where(mine).values(failures=kept))
        return SessionStep(int(turns), escalate)

    def record(self, session_id: str, turn: Turn) -> None:
        """Keep one answered turn (its text and answer PII-masked)."""
        row = {"session_id": session_id, "turn": turn.turn or 0, "at": _now(), "text": redact(turn.text).text,
               "intent": turn.intent, "out_of_scope": turn.out_of_scope, "escalate": turn.escalate,
               "reason": turn.reason, "answer": None if turn.answer is None else redact(turn.answer).text}
        with self.engine.begin() as conn:
            conn.execute(self.turns.insert().values(**row))

    def outcomes(self, since: str | None = None) -> dict[str, tuple[int, int]]:
        """Turns and escalations per reason (since the ISO-8601 UTC time ``since``; None: all)."""
        sa, t = self._sa, self.turns
        query = sa.select(t.c.reason, sa.func.count(), sa.func.sum(sa.case((t.c.escalate, 1), else_=0)))
        if since is not None:
            query = query.where(t.c.at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query.group_by(t.c.reason)).all()
        return {str(reason): (int(n), int(esc or 0)) for reason, n, esc in rows}
