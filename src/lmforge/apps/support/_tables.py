"""Reading the bot's own input files (the FAQ, the out-of-scope examples), checked before any training.

Every problem is a :class:`~lmforge.errors.DataError` naming the file, what is missing, the
columns found and the key that fixes it, so ``lmforge bot build`` exits 2 with one line and
before it spends minutes training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.apps.support._faq import FaqEntry
from lmforge.config import FaqConfig
from lmforge.errors import DataError

__all__ = ["read_faq", "read_oos", "read_table"]


def read_table(path: str | Path, what: str) -> Any:
    """A CSV, JSONL or Parquet file as a pandas frame (the format from the extension)."""
    pd = require("pandas", extra="data", purpose=f"Reading {what}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} cannot be read as {suffix[1:].upper()}: {exc}") from None
    raise DataError(f"{what} {path} has the extension {suffix!r}; use .csv, .jsonl or .parquet.")


def _texts(frame: Any, column: str) -> list[str]:
    return [str(v).strip() for v in frame[column].tolist() if v is not None and str(v).strip()
            and str(v) != "nan"]


def read_faq(cfg: FaqConfig) -> list[FaqEntry]:
    """The FAQ entries of ``cfg.path`` (question, answer, intent when its column exists)."""
    if cfg.path is None:
        raise DataError("bot.faq.path is not set: there is no FAQ to read.")
    frame = read_table(cfg.path, "bot.faq.path")
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
    frame = read_table(path, "bot.oos.path")
    if text_column not in frame.columns:
        raise DataError(
            f"bot.oos.path {path} has no {text_column!r} column (data.text_column); found: "
            f"{', '.join(map(str, frame.columns)) or 'none'}. Rename its text column or set data.text_column."
        )
    texts = _texts(frame, text_column)
    if not texts:
        raise DataError(f"bot.oos.path {path} has no text in its {text_column!r} column.")
    return texts
