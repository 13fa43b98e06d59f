"""From retrieved FAQ entries to the text the customer gets: placeholders, grounded rewriting.

Two rules keep the bot from sending what it should not. A ``{{slot}}`` the spec gives no value
for is never sent (the entry is skipped; with none left the bot escalates). A rewritten answer
must be grounded: at least ``min_overlap`` of its words appear in the entries it was shown,
else the retrieved answer itself is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from lmforge.apps.support._faq import FaqEntry, words

__all__ = ["SLOT", "fill_placeholders", "grounded", "overlap", "rewrite_prompt"]

SLOT = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
"""A ``{{Slot Name}}`` placeholder in an FAQ answer."""


def fill_placeholders(text: str, values: Mapping[str, str]) -> str | None:
    """``text`` with every ``{{slot}}`` replaced by its value, or None when a slot has no value."""
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match.group(1))
        if value is None:
            missing = True
            return match.group(0)
        return value

    out = SLOT.sub(one, text)
    return None if missing else out


def overlap(answer: str, sources: Sequence[str]) -> float:
    """Share of the answer's words that occur in the sources (0 for an answer without words)."""
    said = words(answer)
    if not said:
        return 0.0
    known = {w for s in sources for w in words(s)}
    return sum(w in known for w in said) / len(said)


def grounded(answer: str, sources: Sequence[str], min_overlap: float) -> bool:
    """Whether ``answer`` keeps to its sources: enough overlap and no unfilled slot left in it."""
    return not SLOT.search(answer) and overlap(answer, sources) >= min_overlap


def rewrite_prompt(question: str, entries: Sequence[FaqEntry], answers: Sequence[str]) -> str:
    """The generator's prompt: the customer's question and only the retrieved entries (filled answers)."""
    lines = ["Answer the customer's question using only these FAQ entries.", ""]
    for i, (entry, answer) in enumerate(zip(entries, answers, strict=True), 1):
        lines += [f"FAQ {i} question: {entry.question}", f"FAQ {i} answer: {answer}", ""]
    lines.append(f"Customer: {question}")
    return "\n".join(lines)
