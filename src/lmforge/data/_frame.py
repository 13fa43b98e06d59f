"""``read_frame``: a CSV, TSV, JSONL or Parquet side file as a pandas frame of strings.

The apps read files beside their spec's data (a recommender's items and interactions, a bot's FAQ
and out-of-scope questions) whose columns they pick themselves; every value comes back as a
string, a missing one as ``""``. The training data goes through ``prepare`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge._jsonl import iter_records
from lmforge.errors import DataError

__all__ = ["read_frame"]

_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_frame(path: str | Path, what: str) -> Any:
    """The file at ``path`` as a pandas frame of strings (the format from its extension).

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl`` (or ``.json``, one object per line) or ``.parquet`` file.
        what: the spec key that names the file (``bot.faq.path``), for the errors.

    Raises:
        DataError: no such file, another extension, or a file that cannot be parsed as its extension says.
    """
    pd = require("pandas", extra="data", purpose=f"Reading {what}")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file not found: {p}. Set {what} to an existing CSV, TSV, JSONL or Parquet file.")
    suffix = p.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{what} {p} has the extension {suffix!r}; use .csv, .tsv, .jsonl or .parquet.")
    try:
        if suffix in (".csv", ".tsv"):
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ",")
        elif suffix == ".parquet":
            frame = pd.read_parquet(p)
        else:  # by hand: pandas would make a column of numbers with a gap floats ("3" read back as "3.0")
            with open(p, encoding="utf-8") as fh:
                frame = pd.DataFrame([record for _, record in iter_records(fh, p)], dtype=object)
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{what} {p} cannot be read as {suffix[1:].upper()}: {exc}") from None
    frame = frame.astype(object)
    return frame.where(frame.notna(), "").astype(str)
