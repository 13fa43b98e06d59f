"""The one place a conversation becomes model text, for training and generation alike.

Fine-tuning and serving that render prompts differently is the commonest way a fine-tuned
chat model "forgets" its training: the model learned to answer after one header and is asked
after another. Training (``lmforge.train``) renders the prompt part of each example with
:func:`render_prompt` and appends the response and the end-of-sequence token; the generator
renders the user's prompt with the same function, so both see identical text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmforge.errors import DataError

__all__ = ["Messages", "render_prompt", "to_messages"]

Messages = list[dict[str, str]]
_ROLES = ("system", "user", "assistant")


def to_messages(prompt: str | Sequence[Mapping[str, Any]], system: str | None = None) -> Messages:
    """A plain prompt, or a list of ``{"role", "content"}`` turns, as checked chat turns.

    ``system`` is prepended as a system turn when the turns do not start with one.

    Raises:
        DataError: a turn is not a mapping with a known ``role`` and a string ``content``.
    """
    if isinstance(prompt, str):
        turns: Messages = [{"role": "user", "content": prompt}]
    else:
        turns = []
        for i, turn in enumerate(prompt):
            if not isinstance(turn, Mapping) or turn.get("role") not in _ROLES or not isinstance(turn.get("content"), str):
                raise DataError(
                    f"messages[{i}] must be {{\"role\": one of {', '.join(_ROLES)}, \"content\": text}}, got {turn!r}."
                )
            turns.append({"role": str(turn["role"]), "content": str(turn["content"])})
        if not turns:
            raise DataError("messages is empty: give at least one user turn.")
    if system and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system})
    return turns


def render_prompt(tokenizer: Any, prompt: str | Sequence[Mapping[str, Any]], system: str | None = None) -> str:
    """The text a causal LM continues to answer ``prompt``: everything up to the answer's first token.

    Uses the tokenizer's own chat template with the generation prompt (``<|im_start|>assistant\\n``
    for SmolLM2); a tokenizer without a template gets a plain ``User:``/``Assistant:`` layout.
    The answer the model writes (or is trained on) follows directly, ending with ``eos_token``.
    """
    turns = to_messages(prompt, system)
    if turns[-1]["role"] == "assistant":
        raise DataError("The last turn is the assistant's: the prompt must end with a user (or system) turn.")
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))
    lines = [f"{turn['role'].capitalize()}: {turn['content']}" for turn in turns]
    return "\n".join(lines) + "\nAssistant: "
