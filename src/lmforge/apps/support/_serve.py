"""``lmforge serve BOTDIR``: the bot behind the server's keys, limits, metrics and monitoring.

:func:`serving` tells ``lmforge serve`` that a directory with a ``bot.json`` is a bot: its intent
run is served as an ordinary model (``/v1/predict``) and :class:`BotExtension` adds

- ``POST /v1/chat`` (``{session_id, text}``): exactly ``lmforge bot ask``'s reply plus ``turn``,
  the turn's number in its session. Sessions live in the registry's database
  (:class:`~lmforge.apps.support._sessions.SqlSessions`), so a session's failure count survives a
  restart and is shared by every worker of one registry. The predict role's key, one admission
  slot per turn, ``limits.max_text_chars`` on the text (422 beyond, 413 past the body limit).
  Each turn is counted in ``lmforge_bot_turns_total{outcome}`` (and its escalation in
  ``lmforge_bot_escalations_total{reason}``) and, with ``--monitor``, recorded like a prediction
  (version ``bot`` of the served model: the text, the top intent, every intent's probability).
- ``GET /bot``: the chat page (:mod:`._page`); the monitoring dashboard gets a "Support bot" card
  of the window's outcomes and escalations, read from the database (every worker's turns).

The bot loads in :meth:`BotExtension.start` with the server's verification policy
(``public_key``, ``allow_unsigned``), through :meth:`Bot.load` as ``lmforge bot ask`` does.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signature at runtime.

import asyncio
import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from html import escape
from pathlib import Path
from typing import Annotated, Any

from lmforge._extras import require
from lmforge.apps import Served
from lmforge.apps.support._bot import Bot, Turn
from lmforge.apps.support._layout import BOT_MANIFEST, RUN
from lmforge.apps.support._page import BOT_PAGE, BOT_PAGE_HEADERS
from lmforge.apps.support._sessions import SESSION_ID_CHARS, SqlSessions
from lmforge.monitor import PredictionRecord
from lmforge.serve import ApiError, ExtensionHost, ServeContext, admitted

__all__ = ["SESSION_ID_PATTERN", "BotExtension", "outcome_of", "serving"]

log = logging.getLogger("lmforge.apps.support")

SESSION_ID_PATTERN = rf"^[A-Za-z0-9._:-]{{1,{SESSION_ID_CHARS}}}$"
"""What a session id may be: the page's UUIDs, a ticket number... (no spaces, no e-mail addresses)."""
_PURPOSE = "Serving the bot"


def outcome_of(turn: Turn) -> str:
    """The turn's outcome label in ``lmforge_bot_turns_total``."""
    if turn.escalate:
        return "escalated"
    if turn.out_of_scope:
        return "out_of_scope"
    return "answered" if turn.answer is not None else "unanswered"


def serving(path: Path) -> Served | None:
    """A :class:`Served` for a bot directory (its intent run on ``/v1/predict`` too); None for any other."""
    manifest_path = path / BOT_MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        run = json.loads(manifest_path.read_text(encoding="utf-8")).get("run", RUN)
    except (OSError, ValueError, AttributeError):
        run = RUN  # Bot.load, in start(), says what is wrong with the manifest
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.resolve().name).strip("-._")[:64] or "bot"
    return Served(extension=BotExtension(path), source=path / str(run), model_name=name)


class BotExtension:
    """The bot's routes and state in one server (see the module docstring)."""

    name = "bot"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.bot: Bot | None = None
        self.sessions: SqlSessions | None = None
        self.monitor: Any = None
        self.model_name = "bot"
        self._lock = threading.Lock()  # one turn at a time through the bot's models

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, host: ExtensionHost) -> None:
        bot = Bot.load(self.folder, public_key=host.settings.public_key, allow_unsigned=host.settings.allow_unsigned)
        self.sessions = SqlSessions(host.database)
        bot.sessions = self.sessions
        self.monitor = host.monitor
        self.model_name = host.settings.model_name or self.model_name
        if self.monitor is not None:
            self.monitor.dashboard_sections.append(self.dashboard_card)
        self.bot = bot
        log.info("bot %s: %d intents, OOS %s", self.folder, len(bot.labels), bot.method)

    def ready(self) -> bool:
        return self.bot is not None

    def close(self) -> None:
        self.bot = None

    # -- the work ----------------------------------------------------------------------------------
    def answer(self, session_id: str, text: str) -> Turn:
        """One turn of ``session_id``, counted and kept in the store."""
        bot, sessions = self.bot, self.sessions
        if bot is None or sessions is None:
            raise ApiError(503, "not_ready", "The bot is still loading; retry in a few seconds.")
        with self._lock:
            (turn,) = bot.turns([text], [session_id])
        sessions.record(session_id, turn)
        return turn

    def monitor_record(self, turn: Turn, key_id: str | None, latency_ms: float) -> None:
        """Hand the turn to monitoring like a prediction (never fails the request)."""
        if self.monitor is None:
            return
        try:
            self.monitor.record_many([PredictionRecord(
                id=uuid.uuid4().hex, ts=time.time(), model=self.model_name, version="bot", text=turn.text,
                label=turn.predicted, confidence=turn.confidence, scores=dict(turn.extra.get("scores", {})),
                latency_ms=latency_ms, key_id=key_id, output=turn.answer)])
        except Exception as exc:  # monitoring must never break serving; no text is logged
            log.warning("monitoring could not record a bot turn: %s", type(exc).__name__)

    def dashboard_card(self, minutes: float) -> str:
        """The dashboard's "Support bot" card: turns and escalations per reason in the last ``minutes``."""
        if self.sessions is None:
            return ""
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).isoformat(timespec="microseconds")
        rows = sorted(self.sessions.outcomes(since).items())
        turns, escalated = sum(n for n, _ in dict(rows).values()), sum(e for _, e in dict(rows).values())
        body = "".join(f'<tr data-reason="{escape(r)}"><td>{escape(r)}</td><td>{n:,}</td><td>{e:,}</td></tr>'
                       for r, (n, e) in rows) or "<tr><td colspan=3>no turn yet</td></tr>"
        return ('<section class="grid"><div class="card"><h2>Support bot</h2>'
                f'<p id="bot-summary">{turns:,} turns, {escalated:,} escalated</p><table id="bot-outcomes">'
                f"<tr><th>reason</th><th>turns</th><th>escalated</th></tr>{body}</table></div></section>")

    # -- routes ------------------------------------------------------------------------------------
    def router(self, context: ServeContext) -> Any:
        """``POST /v1/chat`` and ``GET /bot``."""
        require("fastapi", extra="serve", purpose=_PURPOSE)
        pc = require("prometheus_client", extra="serve", purpose=_PURPOSE)
        from fastapi import APIRouter, Depends, Request
        from fastapi.responses import HTMLResponse, Response
        from pydantic import BaseModel, ConfigDict, Field

        max_chars = context.settings.limits.max_text_chars
        turns = pc.Counter("lmforge_bot_turns_total", "Bot turns answered, by outcome.", ["outcome"],
                           registry=context.metrics.registry)
        escalations = pc.Counter("lmforge_bot_escalations_total", "Bot turns handed to a person, by reason.",
                                 ["reason"], registry=context.metrics.registry)

        class ChatRequest(BaseModel):
            model_config = ConfigDict(extra="forbid")
            session_id: str = Field(pattern=SESSION_ID_PATTERN,
                                    description="The conversation's id (letters, digits, . _ : -).")
            text: str = Field(min_length=1, max_length=max_chars,
                              description=f"The customer's message, at most {max_chars} characters.")

        Key = Annotated[Any, Depends(context.require_predict)]
        router = APIRouter()

        @router.post("/v1/chat", tags=["bot"], summary="One turn of a conversation with the support bot")
        async def chat(body: ChatRequest, request: Request, key: Key) -> Response:
            with admitted(request, 1):
                started = time.monotonic()
                try:
                    turn = await asyncio.to_thread(self.answer, body.session_id, body.text)
                except ApiError:
                    raise
                except Exception as exc:
                    log.error("bot turn failed: %s", type(exc).__name__)  # never the text
                    raise ApiError(500, "model_error", "The bot failed on this turn; the server log has the "
                                   "details.") from None
            latency_ms = (time.monotonic() - started) * 1e3
            turns.labels(outcome_of(turn)).inc()
            if turn.escalate:
                escalations.labels(turn.reason).inc()
            self.monitor_record(turn, getattr(key, "key_id", None), latency_ms)
            payload = {**turn.reply(), "turn": turn.turn}
            return Response(json.dumps(payload, ensure_ascii=False), media_type="application/json")

        @router.get("/bot", include_in_schema=False)
        async def bot_page() -> HTMLResponse:
            return HTMLResponse(BOT_PAGE, headers=BOT_PAGE_HEADERS)

        return router
