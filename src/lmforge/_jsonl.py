"""Read JSONL records that each carry a text field, with errors that name file, line and fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from lmforge.errors import DataError

__all__ = ["iter_text_records"]


def iter_text_records(fh: TextIO, path: Path, text_field: str) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of ``fh`` (blank lines skipped); each must hold a string ``text_field``.

    Raises:
        DataError: a line is not JSON, not an object, or lacks the text field (its fields are listed).
    """
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {n} is not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {n} holds a JSON {type(record).__name__}, not an object.")
        if not isinstance(record.get(text_field), str):
            raise DataError(
                f"{path} line {n} has no string field '{text_field}' "
                f"(fields: {', '.join(map(str, record)) or 'none'}). Name the text field with --text-field."
            )
        yield record
