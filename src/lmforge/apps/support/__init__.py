"""The customer-service bot (issue 16): intents, out-of-scope detection, FAQ retrieval, grounded
answers, escalation, composed from the stages.

- :func:`build_bot`: ``lmforge bot build SPEC --out DIR``: the spec's ``data``/``model``/``train``
  train the intent classifier as a ``pipeline`` run in ``DIR/run``; :func:`calibrate_bot` then
  fits the out-of-scope detector and threshold (:mod:`._oos`), indexes the FAQ (:class:`FaqIndex`)
  and writes ``DIR/bot.json`` (the layout is in :mod:`._layout`).
- :class:`Bot`: ``lmforge bot ask``: ``Bot.load(DIR).ask(texts, session_ids)`` returns the
  replies of the output contract (:data:`REPLY_KEYS`).
- :func:`evaluate_bot`: ``lmforge bot eval``: ``DIR/eval/bot_metrics.json`` and the report.
- :func:`serving`: ``lmforge serve DIR``: the intent run on ``/v1/predict`` plus
  :class:`BotExtension`'s ``POST /v1/chat`` and ``GET /bot``, sessions in the registry's database
  (:class:`SqlSessions`; :class:`MemorySessions` outside a server).
"""

from lmforge.apps.support._answer import SLOT, fill_placeholders, grounded, overlap, rewrite_prompt
from lmforge.apps.support._bot import REPLY_KEYS, Bot, Turn
from lmforge.apps.support._build import build_bot, calibrate_bot, check_bot_inputs
from lmforge.apps.support._eval import evaluate_bot, faq_ranks, read_labeled, render_bot_report
from lmforge.apps.support._faq import BM25, FaqEntry, FaqIndex, words
from lmforge.apps.support._layout import BOT_MANIFEST, EVAL, FAQ, METRICS, OOS_WEIGHTS, REPORT, RUN
from lmforge.apps.support._oos import Mahalanobis, Neighbours, calibrate, choose_method, oos_scores
from lmforge.apps.support._serve import BotExtension, outcome_of, serving
from lmforge.apps.support._sessions import MemorySessions, SessionStep, SqlSessions, next_failures

__all__ = [
    "BM25",
    "BOT_MANIFEST",
    "EVAL",
    "FAQ",
    "METRICS",
    "OOS_WEIGHTS",
    "REPLY_KEYS",
    "REPORT",
    "RUN",
    "SLOT",
    "Bot",
    "BotExtension",
    "FaqEntry",
    "FaqIndex",
    "Mahalanobis",
    "MemorySessions",
    "Neighbours",
    "SessionStep",
    "SqlSessions",
    "Turn",
    "build_bot",
    "calibrate",
    "calibrate_bot",
    "check_bot_inputs",
    "choose_method",
    "evaluate_bot",
    "faq_ranks",
    "fill_placeholders",
    "grounded",
    "next_failures",
    "oos_scores",
    "outcome_of",
    "overlap",
    "read_labeled",
    "render_bot_report",
    "rewrite_prompt",
    "serving",
    "words",
]
