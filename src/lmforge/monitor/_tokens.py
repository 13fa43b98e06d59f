"""The word tokenizer of the out-of-vocabulary detector."""

from __future__ import annotations

import re

__all__ = ["tokens"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# One token per CJK character (those scripts have no spaces), else a run of letters/digits
# that stops at a CJK character; digit-only runs become one placeholder, so flight numbers
# and prices do not inflate the out-of-vocabulary rate.
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_DIGITS = re.compile(r"^\d+$")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``; each CJK character is a token; numbers become ``<num>``."""
    return ["<num>" if _DIGITS.match(t) else t for t in _TOKEN.findall(text.lower())]
