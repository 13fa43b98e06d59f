"""The prepared splits of a generative run, as (prompt, reference answer) examples.

A row of ``data/{train,val,test}.jsonl`` is ``{"prompt", "response"}`` or ``{"messages": [...]}``
whose last turn is the assistant's answer; ``lmforge.data.read_examples`` reads and checks them,
as training does. The evaluation needs three views of each row: what the generator is asked
(the prompt text, or the chat turns before the answer), the reference answer, and a plain-text
query for the retrieval baseline and the report (the user turns, one per line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.data import example_prompt, example_response, read_examples
from lmforge.predict import Messages
from lmforge.rundir import RunDir

__all__ = ["GenExample", "read_generation_split"]


@dataclass(frozen=True)
class GenExample:
    """One evaluation example of a generative run."""

    prompt: str | Messages
    """What the generator is asked: the prompt text, or the chat turns before the answer."""
    reference: str
    """The answer written in the data."""
    query: str
    """The user turns as plain text (the retrieval baseline's query, the report's prompt column)."""


def _example(record: dict[str, Any]) -> GenExample:
    prompt = example_prompt(record)
    if isinstance(prompt, str):
        return GenExample(prompt=prompt, reference=example_response(record), query=prompt)
    turns = [{"role": str(t["role"]), "content": str(t["content"])} for t in prompt]
    query = "\n".join(t["content"] for t in turns if t["role"] == "user")
    return GenExample(prompt=turns, reference=example_response(record), query=query)


def read_generation_split(run: RunDir, split: str) -> list[GenExample]:
    """The examples of one prepared split (``train``, ``val`` or ``test``) of a generative run.

    Raises:
        RunDirError: the split file is missing (run ``lmforge prepare``) or has malformed lines
            (the first five are named).
    """
    return [_example(record) for record in read_examples(run, split)]
