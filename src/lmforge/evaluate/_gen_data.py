"""The prepared splits of a generative run, as (prompt, reference answer) examples.

A row of ``data/{train,val,test}.jsonl`` is ``{"prompt", "response"}`` or ``{"messages": [...]}``
whose last turn is the assistant's answer. The evaluation needs three views of each row:
what the generator is asked (the prompt text, or the chat turns before the answer), the
reference answer, and a plain-text query for the retrieval baseline and the report (the user
turns, one per line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmforge.errors import DataError
from lmforge.predict import Messages, to_messages
from lmforge.rundir import RunDir

__all__ = ["GenExample", "read_generation_split"]

_PREPARE_HINT = "Run `lmforge prepare spec.yaml` (with task: generate) to write the prepared data splits."
_SHAPE = '{"prompt": str, "response": str} or {"messages": [{"role", "content"}, ...]}'


@dataclass(frozen=True)
class GenExample:
    """One evaluation example of a generative run."""

    prompt: str | Messages
    """What the generator is asked: the prompt text, or the chat turns before the answer."""
    reference: str
    """The answer written in the data."""
    query: str
    """The user turns as plain text (the retrieval baseline's query, the report's prompt column)."""


def _example(record: Any) -> GenExample:
    if not isinstance(record, Mapping):
        raise ValueError("not a JSON object")
    if "messages" in record:
        turns = to_messages(record["messages"])
        if turns[-1]["role"] != "assistant" or len(turns) < 2:
            raise ValueError("the last of at least two turns must be the assistant's answer")
        before = turns[:-1]
        query = "\n".join(t["content"] for t in before if t["role"] == "user")
        return GenExample(prompt=before, reference=turns[-1]["content"], query=query)
    prompt, response = record.get("prompt"), record.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str):
        raise ValueError(f"fields {', '.join(map(str, record)) or 'none'}")
    return GenExample(prompt=prompt, reference=response, query=prompt)


def read_generation_split(run: RunDir, split: str) -> list[GenExample]:
    """The examples of one prepared split (``train``, ``val`` or ``test``) of a generative run.

    Raises:
        RunDirError: the split file is missing (run ``lmforge prepare``).
        DataError: lines that are not JSON of the shape above (the first five are named).
    """
    path = run.split_path(split)
    run.require(path.relative_to(run.root).as_posix(), hint=_PREPARE_HINT)
    examples: list[GenExample] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                examples.append(_example(json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(f"line {lineno}: not JSON ({exc.msg})")
            except (ValueError, DataError) as exc:
                problems.append(f"line {lineno}: expected {_SHAPE} ({exc})")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{path} has malformed lines: {'; '.join(problems[:5])}{more}. {_PREPARE_HINT}")
    return examples
