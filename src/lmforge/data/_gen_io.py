"""Read question/answer rows for ``task: generate`` from CSV, JSONL, Parquet or the catalog.

Either a prompt and a response column (``data.prompt_column``, ``data.response_column``) or a
chat-turns column (``data.messages_column``: a list of ``{role, content}``, in CSV a JSON
string), whichever the file has; the messages column wins when both are there. Each row keeps
where it came from (``row 12 of data.csv``, ``line 7 of chats.jsonl``) so that a later error
can name it.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.catalog import load_dataset
from lmforge.data._io import _format_of, decode_bytes
from lmforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from lmforge.config import DataConfig

__all__ = ["RawRow", "read_gen_table"]


@dataclass
class RawRow:
    """One source row: the prompt and response cells, or the turns cell (not yet checked)."""

    where: str
    chat: bool = False
    """The messages shape (``messages`` set) rather than prompt/response."""
    prompt: Any = None
    response: Any = None
    messages: Any = None


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _columns(found: list[str], cfg: DataConfig, source: str) -> bool:
    """True for the messages shape, False for prompt/response; missing columns are an error."""
    if cfg.messages_column in found:
        return True
    problems = []
    for key, column in (("data.prompt_column", cfg.prompt_column), ("data.response_column", cfg.response_column)):
        if column not in found:
            close = difflib.get_close_matches(column, found, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key} is '{column}' but {source} has no such column.{hint}")
    if problems:
        shown = ", ".join(repr(c) for c in found[:50]) or "(none)"
        raise DataError(
            " ".join(problems) + f" Columns found: {shown}. Set data.prompt_column and data.response_column to "
            f"the question and answer columns, or data.messages_column to a column of chat turns."
        )
    return False


def _rows(records: list[dict[str, Any]], wheres: list[str], cfg: DataConfig, source: str) -> list[RawRow]:
    found = list(dict.fromkeys(key for record in records for key in record))
    if _columns(found, cfg, source):
        return [RawRow(w, chat=True, messages=_cell(r.get(cfg.messages_column))) for r, w in zip(records, wheres, strict=True)]
    return [
        RawRow(w, prompt=_cell(r.get(cfg.prompt_column)), response=_cell(r.get(cfg.response_column)))
        for r, w in zip(records, wheres, strict=True)
    ]


def _read_jsonl(text: str, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    wheres: list[str] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {lineno} is not valid JSON ({exc.msg}). Each line must be one object.") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {lineno} holds a {type(record).__name__}; each line must be a JSON object.")
        records.append(record)
        wheres.append(f"line {lineno} of {path}")
    if not records:
        raise DataError(f"{path} holds no JSON records.")
    return records, wheres


def _read_file(path: Path, cfg: DataConfig) -> tuple[list[dict[str, Any]], list[str], str | None]:
    fmt, sep = _format_of(cfg, path)
    if fmt == "parquet":
        pq = require("pyarrow.parquet", extra="data", purpose="Reading Parquet files")
        try:
            records = pq.read_table(path).to_pylist()
        except OSError as exc:
            raise DataError(f"{path} is not a readable Parquet file: {exc}. Check data.format and the file.") from None
        return records, [f"row {i} of {path}" for i in range(1, len(records) + 1)], None
    text, encoding = decode_bytes(path.read_bytes(), path, cfg.encoding)
    if fmt == "jsonl":
        records, wheres = _read_jsonl(text, path)
        return records, wheres, encoding
    pd = require("pandas", extra="data", purpose="Reading CSV files")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}. Check data.format and the file.") from None
    records = frame.to_dict(orient="records")
    return records, [f"row {i} of {path}" for i in range(1, len(records) + 1)], encoding


def read_gen_table(cfg: DataConfig, path: str | Path | None = None, *,
                   key: str = "data.path") -> tuple[list[RawRow], str, str | None]:
    """The raw rows of ``path`` (default ``cfg.path``, else the catalog dataset), its source and encoding.

    Raises:
        DataError: missing file, unreadable file, missing columns (the found ones are listed).
    """
    path = path if path is not None else cfg.path
    if path is None:
        if cfg.dataset is None:
            raise ConfigError("Set data.path to a CSV, JSONL or Parquet file, or data.dataset to a packaged dataset.")
        source = f"catalog:{cfg.dataset}"
        records = load_dataset(cfg.dataset).to_dict(orient="records")
        wheres = [f"row {i} of {source}" for i in range(1, len(records) + 1)]
        fixed = dataclasses.replace(cfg, prompt_column="prompt", response_column="response", messages_column="messages")
        return _rows(records, wheres, fixed, source), source, None
    file = Path(path)
    if not file.is_file():
        raise DataError(f"Data file not found: {file} ({key}). Check the path; relative paths start at {Path.cwd()}.")
    records, wheres, encoding = _read_file(file, cfg)
    return _rows(records, wheres, cfg, str(path)), str(path), encoding
