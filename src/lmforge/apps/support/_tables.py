"""Reading the bot's own input files (the FAQ, the out-of-scope examples), checked before any training.

Every problem is a :class:`~lmforge.errors.DataError` naming the file, what is missing, the
columns found and the key that fixes it, so ``lmforge bot build`` exits 2 with one line and
before it spends minutes training.
"""

from __future__ import annotations

from typing import Any

from lmforge.apps.support._faq import FaqEntry
from lmforge.config import FaqConfig
from lmforge.data import read_frame
from lmforge.errors import DataError

__all__ = ["read_faq", "read_oos"]


def _texts(frame: Any, column: str) -> list[str]:
    return [str(v).strip() for v in frame[column].tolist() if v is not None and str(v).strip()
            and str(v) != "nan"]


def read_faq(cfg: FaqConfig) -> list[FaqEntry]:
    """The FAQ entries of ``cfg.path`` (question, answer, intent when its column exists)."""
    if cfg.path is None:
        raise DataError("bot.faq.path is not set: there is no FAQ to read.")
    frame = read_frame(cfg.path, "bot.faq.path")
    missing = [c for c in (cfg.question_column, cfg.answer_column) if c not in frame.columns]
    if missing:
        raise DataError(
            f"bot.faq.path {cfg.path} has no {' and no '.join(repr(c) for c in missing)} column; found: "
            f"{', '.join(map(str, frame.columns)) or 'none'}. Name its question and answer columns with "
            "bot.faq.question_column and bot.faq.answer_column."
        )
    has_intent = cfg.intent_column in frame.columns
    entries = []
    for row in frame.to_dict("records"):
        question, answer = str(row[cfg.question_column] or "").strip(), str(row[cfg.answer_column] or "").strip()
        if question and answer and question != "nan" and answer != "nan":
            intent = str(row[cfg.intent_column]).strip() if has_intent and row[cfg.intent_column] else None
            entries.append(FaqEntry(question, answer, intent))
    if not entries:
        raise DataError(f"bot.faq.path {cfg.path} has no row with both a question and an answer.")
    return entries


def read_oos(path: str, text_column: str) -> list[str]:
    """The out-of-scope example texts of ``path`` (the spec's text column)."""
    frame = read_frame(path, "bot.oos.path")
    if text_column not in frame.columns:
        raise DataError(
            f"bot.oos.path {path} has no {text_column!r} column (data.text_column); found: "
            f"{', '.join(map(str, frame.columns)) or 'none'}. Rename its text column or set data.text_column."
        )
    texts = _texts(frame, text_column)
    if not texts:
        raise DataError(f"bot.oos.path {path} has no text in its {text_column!r} column.")
    return texts
