"""Question/answer examples of ``task: generate``: their two shapes, and the prepared splits read back.

An example is ``{"prompt": str, "response": str}`` or ``{"messages": [{"role", "content"}, ...]}``
whose last turn is the assistant's answer. Prepare writes them (``RUN/data/*.jsonl``); training
and evaluation read them with :func:`read_examples`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.rundir import RunDir, read_split

__all__ = ["ROLES", "example_prompt", "example_response", "is_example", "read_examples"]

ROLES = ("system", "user", "assistant")
_PREPARE_HINT = "Run `lmforge prepare` (or `lmforge run`) first to create the data splits."


def is_example(record: Any) -> bool:
    """Whether ``record`` is a well-formed example of either shape."""
    if not isinstance(record, dict):
        return False
    turns = record.get("messages")
    if turns is not None:
        return (
            isinstance(turns, list)
            and len(turns) >= 2
            and all(isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str) for t in turns)
            and turns[-1]["role"] == "assistant"
        )
    return isinstance(record.get("prompt"), str) and isinstance(record.get("response"), str)


def example_prompt(record: dict[str, Any]) -> str | list[dict[str, str]]:
    """What the model answers: the prompt text, or every turn before the last."""
    return record["messages"][:-1] if "messages" in record else record["prompt"]


def example_response(record: dict[str, Any]) -> str:
    """The answer the model learns to write: the response, or the last (assistant) turn."""
    return str(record["messages"][-1]["content"] if "messages" in record else record["response"])


def read_examples(run: RunDir | str | Path, split: str) -> list[dict[str, Any]]:
    """The examples of a generative run's prepared split (``train``, ``val`` or ``test``).

    Raises:
        ConfigError: ``split`` is not one of :data:`lmforge.rundir.SPLITS`.
        RunDirError: the split is missing (run ``lmforge prepare``) or lines of it are malformed
            (the first five are named).
    """
    return read_split(run, split, valid=is_example,
                      expected='{"prompt": str, "response": str} or {"messages": [turns]}')
