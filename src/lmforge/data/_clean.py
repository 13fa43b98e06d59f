"""Text normalization and the row-level cleaning of a table (missing labels, empty texts)."""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from dataclasses import dataclass, field

from lmforge.errors import DataError

__all__ = ["Cleaned", "clean_rows", "clean_text"]

logger = logging.getLogger(__name__)

# Comments, and things that look like tags: "<b>", "</p>", "<a href=...>", "<br/>".
# A letter must follow "<", so "I <3 it" and "a < b" are left alone.
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>", re.S)
# C0/C1 control characters other than whitespace (which is collapsed into a space below),
# plus invisible format characters that only get in the way of matching: zero-width space,
# word joiner, byte-order mark, soft hyphen. ZWJ/ZWNJ are kept: emoji and scripts need them.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u200b\u2060\ufeff\u00ad]")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Normalize one text for training and matching.

    Strips HTML tags and unescapes entities (``&amp;`` -> ``&``), applies Unicode NFKC
    (full-width forms, ligatures, non-breaking spaces), removes control and zero-width
    characters, turns line breaks and tabs into spaces and collapses runs of whitespace.
    Case is kept; matching casefolds separately.
    """
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", text)
    return _SPACE.sub(" ", text).strip()


def _clean_bounded(text: str, max_chars: int) -> str:
    """``clean_text`` that does not clean megabytes only to keep ``max_chars`` of them.

    Cleaning only shrinks a text by removing markup and whitespace, so a generous raw prefix
    already cleans to more than ``max_chars``; the whole text is cleaned only when that prefix
    shrank too much (markup-heavy input). The result is longer than ``max_chars`` exactly
    when the fully cleaned text would be, so truncation is still counted.
    """
    limit = 8 * max_chars + 4096
    if len(text) > limit:
        cleaned = clean_text(text[:limit])
        if len(cleaned) > max_chars + 1024:  # well past the cut, so the cut's ragged end is dropped
            return cleaned
    return clean_text(text)


@dataclass
class Cleaned:
    """Rows that survived cleaning, and what was dropped or changed on the way."""

    texts: list[str]
    labels: list[str]
    missing_label: int = 0
    empty_text: int = 0
    truncated: int = 0
    warnings: list[str] = field(default_factory=list)


def clean_rows(texts: list[str | None], labels: list[str | None], *, max_chars: int, source: str) -> Cleaned:
    """Drop rows without a label or with an empty text, normalize and truncate the texts.

    Raises:
        DataError: every label is missing, or no text is left after cleaning.
    """
    out = Cleaned(texts=[], labels=[])
    if texts and all(label is None for label in labels):
        raise DataError(
            f"Every label in {source} is missing or empty ({len(labels)} rows). "
            "Check data.label_column names the column that holds the labels."
        )
    longest = 0
    for text, label in zip(texts, labels, strict=True):
        if label is None:
            out.missing_label += 1
            continue
        cleaned = _clean_bounded(text, max_chars) if text else ""
        if not cleaned:
            out.empty_text += 1
            continue
        if len(cleaned) > max_chars:
            out.truncated += 1
            longest = max(longest, len(text or ""))
            cleaned = cleaned[:max_chars].rstrip()
        out.texts.append(cleaned)
        out.labels.append(label)
    if not out.texts:
        raise DataError(
            f"All texts are empty in {source} after cleaning ({out.empty_text} empty, "
            f"{out.missing_label} without a label). Check data.text_column names the column with the text."
        )
    if out.missing_label:
        out.warnings.append(f"{out.missing_label} rows of {source} have no label and were dropped.")
    if out.empty_text:
        out.warnings.append(f"{out.empty_text} rows of {source} have an empty text and were dropped.")
    if out.truncated:
        out.warnings.append(
            f"{out.truncated} texts of {source} are longer than data.max_chars={max_chars} "
            f"(longest {longest} characters before cleaning) and were truncated."
        )
    for message in out.warnings:
        logger.warning(message)
    return out
