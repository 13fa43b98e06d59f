"""The registry of PII recognizers: each finds one entity type, by pattern plus a validator.

A recognizer proposes candidate spans with a regular expression and keeps only those its
validator accepts (a check digit, a birth date, a Luhn sum, a parsed address...), so near
misses such as order numbers, amounts and dates are not reported. Where the words just
before a candidate say what it is (a contact cue such as "call me at" or "请拨打" before a
phone number), a looser check of its shape is enough: a mistyped number is still personal
data, and recall matters more than validity there. Recognizers register
themselves by name in :mod:`lmforge.guard.pii._recognizers`; more can be added with
:func:`register_recognizer`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lmforge.errors import ConfigError

__all__ = [
    "RECOGNIZERS",
    "Entity",
    "Recognizer",
    "RegexRecognizer",
    "entity_types",
    "get_recognizer",
    "register_recognizer",
]

_TYPE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

# A label such as "order no." or "订单号" right before a number says it is not PII.
_DENY_LABELS = (
    r"order\s*(?:no\.?|number|num|id|#)?",
    r"tracking\s*(?:no\.?|number|id|#)?",
    r"invoice\s*(?:no\.?|number|id|#)?",
    r"transaction\s*(?:no\.?|number|id|#)?",
    r"ref(?:erence)?\s*(?:no\.?|number|#)?",
    r"serial\s*(?:no\.?|number|#)?",
    r"sku",
    r"amount",
    r"total",
    r"订单(?:号|编号)?",
    r"单号",
    r"运单号?",
    r"快递单号",
    r"流水号",
    r"交易号",
    r"发票号",
    r"金额",
    r"合计",
)
_DENY_BEFORE = re.compile(r"(?<![A-Za-z])(?:" + "|".join(_DENY_LABELS) + r")\s*[:：#=＃]?\s*$", re.IGNORECASE)
_CURRENCY_BEFORE = re.compile(r"[$¥￥€£]\s*$|(?:USD|RMB|CNY|EUR|GBP)\s*$", re.IGNORECASE)
_AMOUNT_AFTER = re.compile(r"^(?:\.\d|,\d{3}(?!\d)|\s*(?:元|块|美元|USD|RMB|CNY|dollars?\b))", re.IGNORECASE)


_DIGIT_RUN = re.compile(r"\d+")


@functools.lru_cache(maxsize=16)
def longest_digit_run(text: str) -> int:
    """Length of the longest run of digits in ``text`` (cached: every numeric recognizer asks)."""
    return max(map(len, _DIGIT_RUN.findall(text)), default=0)


def labeled_as_non_pii(text: str, start: int, end: int, window: int = 24) -> bool:
    """True when a number at ``text[start:end]`` is labeled as an order number or an amount."""
    before = text[max(0, start - window) : start]
    return bool(
        _DENY_BEFORE.search(before) or _CURRENCY_BEFORE.search(before) or _AMOUNT_AFTER.match(text[end : end + 8])
    )


@dataclass(frozen=True)
class Entity:
    """A span of PII in a text: ``text[start:end]`` is an entity of ``type``.

    Offsets count Python characters (code points) of the original text. The matched value
    itself is not kept, so entities can be logged and stored.
    """

    type: str
    """Entity type: EMAIL, PHONE, CN_ID, BANK_CARD, IP, URL, PASSPORT (or a registered one)."""
    start: int
    """Offset of the first character."""
    end: int
    """Offset one past the last character."""
    recognizer: str
    """Name of the recognizer that found it."""

    def to_dict(self) -> dict[str, str | int]:
        """``{"type", "start", "end"}``, the form written next to redacted records."""
        return {"type": self.type, "start": self.start, "end": self.end}


@runtime_checkable
class Recognizer(Protocol):
    """Finds the spans of one entity type in a text."""

    name: str
    entity_type: str
    priority: int
    """When spans of two recognizers overlap and have the same length, the higher priority wins."""

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        """Yield ``(start, end)`` of each validated entity in ``text``."""
        ...


class RegexRecognizer:
    """A pattern proposes candidates, a validator keeps the real ones.

    Args:
        name: Registry name, e.g. ``"cn_id"``.
        entity_type: The type of what it finds, e.g. ``"CN_ID"``.
        pattern: Compiled expression; the span is group ``"pii"`` when present, else the match.
        validate: Called with the candidate text; False drops it. None accepts every match.
        priority: Tie-break between overlapping spans of equal length.
        reject_labeled: Drop numbers labeled as order numbers or amounts (see ``labeled_as_non_pii``).
        require_before: When set, a candidate counts only if this expression matches the
            ``context_window`` characters before it (e.g. "passport" for passport numbers).
        hints: Substrings one of which must occur in the text for a match to be possible (fast skip).
        min_digits: The pattern needs a run of at least this many digits: a text whose longest
            run is shorter is skipped. The longest run is computed once per text and shared by
            every recognizer (a fast skip for the numeric ones).
        gate: A cheap expression that every match implies (e.g. an ``@`` followed by a domain
            label and a dot, for e-mail addresses); a text where it is not found is skipped
            without running the full pattern. It must be a necessary condition, or real entities
            are missed.
        trim: Shortens a candidate before validation (returns a prefix of it), e.g. to drop
            the sentence's full stop after a URL.
        cue: When this expression matches the ``cue_window`` characters before a candidate
            that ``validate`` rejects (e.g. "call me at", "电话"), ``validate_cued`` decides
            instead: the context says what the number is, so its shape is enough.
        cue_window: How many characters before a candidate the cue must lie within.
        validate_cued: The check of a cued candidate; None accepts every cued match.
    """

    def __init__(
        self,
        name: str,
        entity_type: str,
        pattern: re.Pattern[str],
        validate: Callable[[str], bool] | None = None,
        *,
        priority: int = 0,
        reject_labeled: bool = False,
        require_before: re.Pattern[str] | None = None,
        context_window: int = 24,
        hints: Sequence[str] = (),
        min_digits: int = 0,
        gate: re.Pattern[str] | None = None,
        trim: Callable[[str], str] | None = None,
        cue: re.Pattern[str] | None = None,
        cue_window: int = 24,
        validate_cued: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name
        self.entity_type = entity_type
        self.pattern = pattern
        self.validate = validate
        self.priority = priority
        self.reject_labeled = reject_labeled
        self.require_before = require_before
        self.context_window = context_window
        self.hints = tuple(hints)
        self.min_digits = min_digits
        self.gate = gate
        self.trim = trim
        self.cue = cue
        self.cue_window = cue_window
        self.validate_cued = validate_cued

    def __repr__(self) -> str:
        return f"RegexRecognizer({self.name!r}, {self.entity_type!r})"

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if self.hints and not any(h in text for h in self.hints):
            return
        if self.min_digits and longest_digit_run(text) < self.min_digits:
            return
        if self.gate is not None and self.gate.search(text) is None:
            return
        has_group = "pii" in self.pattern.groupindex
        for match in self.pattern.finditer(text):
            start, end = match.span("pii") if has_group else match.span()
            if start < 0:
                continue
            if self.trim is not None:
                end = start + len(self.trim(text[start:end]))
            if end <= start:
                continue
            if self.validate is not None and not self.validate(text[start:end]) and not self._cued(text, start, end):
                continue
            if self.reject_labeled and labeled_as_non_pii(text, start, end):
                continue
            if self.require_before is not None:
                before = text[max(0, start - self.context_window) : start]
                if not self.require_before.search(before):
                    continue
            yield start, end


    def _cued(self, text: str, start: int, end: int) -> bool:
        """A contact cue precedes the candidate and its shape passes ``validate_cued``."""
        if self.cue is None or not self.cue.search(text, max(0, start - self.cue_window), start):
            return False
        return self.validate_cued is None or self.validate_cued(text[start:end])


RECOGNIZERS: dict[str, Recognizer] = {}


def register_recognizer(recognizer: Recognizer) -> Recognizer:
    """Add ``recognizer`` to :data:`RECOGNIZERS` under its name (names are unique)."""
    if not isinstance(recognizer, Recognizer):
        raise TypeError(f"{recognizer!r} has no name, entity_type, priority and find(text); it is not a Recognizer.")
    if recognizer.name in RECOGNIZERS:
        raise ConfigError(f"A PII recognizer named '{recognizer.name}' is already registered; pick another name.")
    if not _TYPE_NAME.match(recognizer.entity_type):
        raise ConfigError(
            f"PII entity type {recognizer.entity_type!r} of recognizer '{recognizer.name}' must be upper case, "
            "like EMAIL or CN_ID."
        )
    RECOGNIZERS[recognizer.name] = recognizer
    return recognizer


def get_recognizer(name: str) -> Recognizer:
    """The recognizer registered as ``name``; an unknown name lists the available ones."""
    try:
        return RECOGNIZERS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown PII recognizer '{name}'. Available: {', '.join(sorted(RECOGNIZERS))}."
        ) from None


def entity_types() -> list[str]:
    """Sorted entity types found by the registered recognizers."""
    return sorted({r.entity_type for r in RECOGNIZERS.values()})
