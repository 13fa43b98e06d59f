"""Read labeled text from a CSV, JSONL or Parquet file, or from the packaged catalog.

Text files are decoded here rather than by pandas so that a bad byte can be reported with
its offset and line, and so that the encoding actually used ends up in the data report.
"""

from __future__ import annotations

import codecs
import difflib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.catalog import load_dataset
from lmforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from lmforge.config import DataConfig

__all__ = ["FORMATS_BY_EXTENSION", "Table", "decode_bytes", "load_frame", "read_table"]

# Extension -> (format, CSV separator). `.tsv` is a CSV with tabs.
FORMATS_BY_EXTENSION: dict[str, tuple[str, str]] = {
    ".csv": ("csv", ","),
    ".tsv": ("csv", "\t"),
    ".jsonl": ("jsonl", ""),
    ".ndjson": ("jsonl", ""),
    ".parquet": ("parquet", ""),
    ".pq": ("parquet", ""),
}

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_HINT = "Set data.encoding to the file's encoding, e.g. latin-1, cp1252 or gbk."


@dataclass
class Table:
    """Raw rows of one source: texts and labels as strings, ``None`` where missing."""

    texts: list[str | None]
    labels: list[str | None]
    source: str
    """The file path, or ``catalog:NAME`` for a packaged dataset."""
    encoding: str | None
    """Encoding the file was decoded with (None for Parquet and packaged datasets)."""


def _as_str(value: Any) -> str | None:
    """A cell as a string; None for missing values (None, NaN)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _label(value: Any) -> str | None:
    text = _as_str(value)
    if text is None:
        return None
    text = text.strip()
    return text or None


def decode_bytes(raw: bytes, path: str | Path, encoding: str | None) -> tuple[str, str]:
    """Decode a file's bytes with ``encoding``, or detect it (BOM, else UTF-8).

    Returns:
        The text and the name of the encoding used.

    Raises:
        DataError: the bytes are not valid in that encoding; names the file, the byte
            offset and line, and says to set ``data.encoding``.
        ConfigError: ``encoding`` is not an encoding Python knows.
    """
    detected = encoding is None
    if encoding is None:
        encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    else:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(
                f"data.encoding is '{encoding}', which is not a known text encoding. "
                "Use a Python codec name such as utf-8, latin-1, cp1252 or gbk."
            ) from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        where = f"byte offset {exc.start}"
        if "16" not in encoding and "32" not in encoding:  # newline counting needs an ASCII-compatible codec
            line = raw.count(b"\n", 0, exc.start) + 1
            where += f" (line {line})"
        bad = raw[exc.start : max(exc.end, exc.start + 1)].hex(" ")
        raise DataError(
            f"Cannot decode {path} as {encoding}: invalid bytes {bad} at {where}. {_ENCODING_HINT}"
        ) from None
    head = text[:4096]
    if detected and head.count("\x00") > len(head) // 8:
        # ASCII text in UTF-16 without a BOM decodes as "valid" UTF-8 full of NULs.
        order = "le" if raw[1:200:2].count(0) > raw[0:200:2].count(0) else "be"
        raise DataError(
            f"{path} is full of NUL bytes: it looks like UTF-16 without a byte-order mark. "
            f"Set data.encoding to utf-16-{order} (or to the file's real encoding)."
        )
    return text.removeprefix("\ufeff"), encoding


def _missing_columns(found: list[str], text_column: str, label_column: str, path: str | Path) -> None:
    problems = []
    for key, column in (("data.text_column", text_column), ("data.label_column", label_column)):
        if column not in found:
            close = difflib.get_close_matches(column, found, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key} is '{column}' but {path} has no such column.{hint}")
    if problems:
        shown = ", ".join(repr(c) for c in found[:50]) or "(none)"
        raise DataError(
            " ".join(problems) + f" Columns found: {shown}. Set data.text_column and data.label_column "
            "to the columns holding the text and the label."
        )


def _read_csv(text: str, sep: str, cfg: DataConfig, path: Path) -> tuple[list[Any], list[Any]]:
    pd = require("pandas", extra="data", purpose="Reading CSV files")
    try:
        # na_filter=False: a text "NA" or "null" is text, not a missing value; "" is missing.
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(
            f"{path} is not a readable CSV file: {exc}. Check data.format and the file."
        ) from None
    _missing_columns([str(c) for c in frame.columns], cfg.text_column, cfg.label_column, path)
    return frame[cfg.text_column].tolist(), frame[cfg.label_column].tolist()


def _read_jsonl(text: str, cfg: DataConfig, path: Path) -> tuple[list[Any], list[Any]]:
    records: list[dict[str, Any]] = []
    # Split on "\n" only: str.splitlines() would also split on U+2028 inside JSON strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} line {lineno} is not valid JSON ({exc.msg}). Each line must be one object."
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path} line {lineno} holds a {type(record).__name__}; each line must be a JSON object."
            )
        records.append(record)
    if not records:
        raise DataError(f"{path} holds no JSON records.")
    found = list(dict.fromkeys(key for record in records for key in record))
    _missing_columns(found, cfg.text_column, cfg.label_column, path)
    return [r.get(cfg.text_column) for r in records], [r.get(cfg.label_column) for r in records]


def _read_parquet(cfg: DataConfig, path: Path) -> tuple[list[Any], list[Any]]:
    pa = require("pyarrow", extra="data", purpose="Reading Parquet files")
    pq = require("pyarrow.parquet", extra="data", purpose="Reading Parquet files")
    try:
        names = list(pq.read_schema(path).names)
        _missing_columns(names, cfg.text_column, cfg.label_column, path)
        table = pq.read_table(path, columns=[cfg.text_column, cfg.label_column])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path} is not a readable Parquet file: {exc}. Check data.format and the file."
        ) from None
    return table.column(cfg.text_column).to_pylist(), table.column(cfg.label_column).to_pylist()


def _format_of(cfg: DataConfig, path: Path) -> tuple[str, str]:
    suffix = path.suffix.lower()
    if cfg.format is not None:
        return cfg.format, "\t" if (cfg.format == "csv" and suffix == ".tsv") else ","
    if suffix not in FORMATS_BY_EXTENSION:
        raise DataError(
            f"Cannot tell the format of {path} from its extension '{suffix}'. Supported extensions: "
            f"{', '.join(FORMATS_BY_EXTENSION)}. Rename the file or set data.format (csv, jsonl or parquet)."
        )
    return FORMATS_BY_EXTENSION[suffix]


def read_table(cfg: DataConfig, path: str | Path | None = None, *, key: str = "data.path") -> Table:
    """Raw rows of ``path`` (default ``cfg.path``), or of the catalog dataset when no path is set.

    Args:
        cfg: the ``data`` section of the spec (columns, format, encoding, dataset).
        path: a file to read instead of ``cfg.path`` (e.g. ``cfg.test_path``).
        key: the spec key the path came from, named in error messages.
    """
    path = path if path is not None else cfg.path
    if path is None:
        if cfg.dataset is None:
            raise ConfigError(
                "Set data.path to a CSV, JSONL or Parquet file, or data.dataset to a packaged dataset."
            )
        frame = load_dataset(cfg.dataset)
        return Table(
            texts=[_as_str(v) for v in frame["text"].tolist()],
            labels=[_label(v) for v in frame["label"].tolist()],
            source=f"catalog:{cfg.dataset}",
            encoding=None,
        )
    file = Path(path)
    if not file.is_file():
        raise DataError(
            f"Data file not found: {file} ({key}). Check the path; relative paths start at {Path.cwd()}."
        )
    fmt, sep = _format_of(cfg, file)
    encoding: str | None = None
    if fmt == "parquet":
        texts, labels = _read_parquet(cfg, file)
    else:
        text, encoding = decode_bytes(file.read_bytes(), file, cfg.encoding)
        texts, labels = _read_csv(text, sep, cfg, file) if fmt == "csv" else _read_jsonl(text, cfg, file)
    return Table(
        texts=[_as_str(v) for v in texts],
        labels=[_label(v) for v in labels],
        source=str(path),
        encoding=encoding,
    )


def load_frame(data_cfg: DataConfig, path: str | None = None) -> pd.DataFrame:
    """Labeled text as a frame with exactly the string columns ``text`` and ``label``.

    Reads ``path`` (default ``data_cfg.path``; CSV, JSONL or Parquet, the format from
    ``data.format`` or the extension), or the packaged ``data_cfg.dataset`` when no path is
    set. Missing values are NaN; nothing is cleaned or dropped. ``frame.attrs`` holds the
    ``source`` and the ``encoding`` used.

    Raises:
        DataError: missing file, unknown extension, undecodable bytes, missing columns.
    """
    pd = require("pandas", extra="data", purpose="Loading data")
    table = read_table(data_cfg, path)
    frame = pd.DataFrame(
        {"text": pd.Series(table.texts, dtype="str"), "label": pd.Series(table.labels, dtype="str")}
    )
    frame.attrs.update(source=table.source, encoding=table.encoding)
    return frame
