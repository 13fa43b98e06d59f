"""Read JSONL records that each carry a text field (or a prompt), with errors that name file, line and fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from lmforge.errors import DataError

__all__ = ["iter_prompt_records", "iter_records", "iter_text_records"]


def iter_records(fh: TextIO, path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of ``fh``.

    Raises:
        DataError: a line is not JSON, or not an object (file and line named).
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
        yield n, record


def iter_prompt_records(fh: TextIO, path: Path, prompt_field: str = "prompt",
                        messages_field: str = "messages") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each JSON object of ``fh`` that holds a prompt to answer:
    a string ``prompt_field``, or a list ``messages_field`` (chat turns, checked by whoever renders them).

    Raises:
        DataError: a line is not JSON, not an object, or has neither field (its fields are listed).
    """
    for n, record in iter_records(fh, path):
        if not isinstance(record.get(prompt_field), str) and not isinstance(record.get(messages_field), list):
            raise DataError(
                f"{path} line {n} has no string field '{prompt_field}' and no list '{messages_field}' of chat turns "
                f"(fields: {', '.join(map(str, record)) or 'none'})."
            )
        yield n, record


def iter_text_records(fh: TextIO, path: Path, text_field: str) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of ``fh`` (blank lines skipped); each must hold a string ``text_field``.

    Raises:
        DataError: a line is not JSON, not an object, or lacks the text field (its fields are listed).
    """
    for n, record in iter_records(fh, path):
        if not isinstance(record.get(text_field), str):
            raise DataError(
                f"{path} line {n} has no string field '{text_field}' "
                f"(fields: {', '.join(map(str, record)) or 'none'}). Name the text field with --text-field."
            )
        yield record
