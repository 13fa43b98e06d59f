"""Stream sources: a JSONL or CSV file replayed, or JSON lines on stdin.

Every source yields the same :class:`Stream`: rows with a parsed time and a text, sorted by time,
and a count of the rows it skipped. A row without a parseable timestamp or a text is counted and
skipped with a warning; when more than ``max_bad_share`` of the rows are, the stream is refused
(a wrong ``time_field`` or a file in another date format should stop the replay, not thin it).
A missing timestamp or text column is refused at once, naming the columns the source has.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lmforge.apps.watch._time import parse_time
from lmforge.errors import DataError

__all__ = ["Stream", "StreamRow", "read_stream"]

log = logging.getLogger(__name__)

_EXAMPLES = 3  # bad rows quoted in the warning and the error


@dataclass(frozen=True)
class StreamRow:
    """One text of the stream."""

    time: float
    """Epoch seconds (UTC)."""
    text: str


@dataclass
class Stream:
    """The rows of a source, in time order, and what was skipped."""

    rows: list[StreamRow]
    source: str
    total: int = 0
    """Rows read (skipped ones included)."""
    bad: int = 0
    """Rows skipped: no parseable timestamp, or no text."""
    bad_examples: list[str] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [r.time for r in self.rows]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.rows]


def read_stream(path: str | Path, *, time_field: str = "time", text_field: str = "text",
                max_bad_share: float = 0.05, stdin: TextIO | None = None) -> Stream:
    """Read a stream: ``-`` is JSON lines on stdin, ``*.csv``/``*.tsv`` a delimited file, else JSONL.

    Raises:
        DataError: the file is missing or unreadable, has no ``time_field`` or ``text_field``
            column (the message lists the ones found), or more than ``max_bad_share`` of its
            rows have no parseable timestamp or text.
    """
    if str(path) == "-":
        source, records = "stdin", _json_lines(stdin or sys.stdin, "stdin")
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"Stream file not found: {p}. Pass a JSONL or CSV file with a time and a text column.")
        source = str(p)
        try:
            handle = p.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise DataError(f"Cannot read the stream {p}: {exc}") from None
        with handle:
            if p.suffix.lower() in (".csv", ".tsv"):
                records = _csv_rows(handle, source)
            else:
                records = _json_lines(handle, source)
            try:
                return _collect(records, source, time_field, text_field, max_bad_share)
            except UnicodeDecodeError as exc:
                raise DataError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    return _collect(records, source, time_field, text_field, max_bad_share)


def _json_lines(handle: Iterable[str], source: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        yield number, record if isinstance(record, dict) else None


def _csv_rows(handle: TextIO, source: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    header = handle.readline()
    if not header.strip():
        raise DataError(f"{source} is empty: a CSV stream needs a header with a time and a text column.")
    # The delimiter the header uses most: the gold-news file is tab-separated despite its .csv name.
    delimiter = max((",", "\t", ";", "|"), key=header.count)
    reader = csv.DictReader(io.StringIO(header), delimiter=delimiter)
    columns = reader.fieldnames or []
    rows = csv.reader(handle, delimiter=delimiter)
    yield 0, {"__columns__": columns}
    for number, values in enumerate(rows, 2):
        if not values:
            continue
        yield number, dict(zip(columns, values, strict=False)) if len(values) >= len(columns) else None


def _collect(records: Iterator[tuple[int, dict[str, Any] | None]], source: str, time_field: str,
             text_field: str, max_bad_share: float) -> Stream:
    """Count and check the rows: columns once, every kind of bad row explained in one place."""
    stream = Stream(rows=[], source=source)
    seen: set[str] = set()
    columns_checked = False
    for number, record in records:
        if record is not None and "__columns__" in record:
            _require_columns(list(record["__columns__"]), source, time_field, text_field)
            columns_checked = True
            continue
        stream.total += 1
        if record is not None and not columns_checked:
            seen.update(record)
        ts = parse_time(record.get(time_field)) if record is not None else None
        text = record.get(text_field) if record is not None else None
        if ts is None or not isinstance(text, str) or not text.strip():
            stream.bad += 1
            if len(stream.bad_examples) < _EXAMPLES:
                stream.bad_examples.append(_describe_bad(number, record, time_field, text_field))
            continue
        stream.rows.append(StreamRow(ts, text))
    if not columns_checked and stream.total and not stream.rows:
        _require_columns(sorted(seen), source, time_field, text_field)
    if stream.total == 0:
        raise DataError(f"{source} holds no rows: a stream needs one JSON object (or CSV row) per text.")
    share = stream.bad / stream.total
    if stream.bad and share > max_bad_share:
        raise DataError(
            f"{stream.bad} of {stream.total} rows of {source} ({share:.1%}) have no parseable timestamp in "
            f"'{time_field}' or no text in '{text_field}' (e.g. {'; '.join(stream.bad_examples)}), more than "
            f"watch.max_bad_share ({max_bad_share:.1%}). Timestamps must be ISO-8601, dd-mm-yyyy, d/m/yyyy or "
            "epoch seconds; fix the column or raise watch.max_bad_share."
        )
    if stream.bad:
        log.warning("%s: skipped %d of %d rows without a parseable timestamp or a text (%s)", source, stream.bad,
                    stream.total, "; ".join(stream.bad_examples))
    stream.rows.sort(key=lambda r: r.time)
    return stream


def _require_columns(columns: list[str], source: str, time_field: str, text_field: str) -> None:
    for key, what in ((time_field, "timestamp"), (text_field, "text")):
        if key not in columns:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise DataError(
                f"{source} has no {what} column '{key}' (watch.{'time' if what == 'timestamp' else 'text'}_field). "
                f"Found: {found}. Set watch.{'time' if what == 'timestamp' else 'text'}_field to one of them."
            )


def _describe_bad(number: int, record: dict[str, Any] | None, time_field: str, text_field: str) -> str:
    if record is None:
        return f"line {number}: not a JSON object or too few columns"
    if parse_time(record.get(time_field)) is None:
        return f"line {number}: {time_field}={str(record.get(time_field))[:40]!r}"
    return f"line {number}: no text in '{text_field}'"
