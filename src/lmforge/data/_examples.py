"""Question/answer examples of ``task: generate``: their two shapes, and the prepared splits read back.

An example is ``{"prompt": str, "response": str}`` or ``{"messages": [{"role", "content"}, ...]}``
whose last turn is the assistant's answer. Prepare writes them (``RUN/data/*.jsonl``); training
and evaluation read them with :func:`read_examples`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, RunDirError
from lmforge.rundir import SPLITS, RunDir

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
    run = run if isinstance(run, RunDir) else RunDir(run)
    if split not in SPLITS:
        raise ConfigError(f"Unknown split '{split}'. Available: {', '.join(SPLITS)}.")
    path = run.split_path(split)
    run.require(path.relative_to(run.root).as_posix(), hint=_PREPARE_HINT)
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {lineno}: not JSON ({exc.msg})")
                continue
            if not is_example(record):
                problems.append(
                    f'line {lineno}: expected {{"prompt": str, "response": str}} or {{"messages": [turns]}}, '
                    f"got {line.strip()[:80]!r}"
                )
                continue
            records.append(record)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise RunDirError(f"{path} has {len(problems)} malformed lines: {shown}{more}. {_PREPARE_HINT}")
    return records
