"""The built-in recognizers, English and Chinese. Importing this module registers them.

Numbers must stand alone: a digit or an ASCII letter right before or after a candidate
rules it out, so a phone number is never cut out of a longer order number, and Chinese
text (no spaces between words) still matches. Numeric recognizers also drop numbers that
are labeled as an order number or an amount ("订单号", "order #", "$", "元"...).

Phone numbers put recall before validity: after a contact cue ("call me at", "电话",
"请拨打"...) a number with the shape of a phone number is one, in an allocated range or not,
and a ``+`` country code set apart from grouped digits is one without a cue. Without either,
the strict validators decide (allocated prefixes, no N11 exchange...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from lmforge.guard.pii._registry import RegexRecognizer, labeled_as_non_pii, register_recognizer
from lmforge.guard.pii._validators import (
    grouped_international_phone,
    plausible_cn_landline,
    plausible_nanp,
    valid_bank_card,
    valid_cn_id,
    valid_cn_landline,
    valid_cn_mobile,
    valid_email,
    valid_international_phone,
    valid_ipv4,
    valid_ipv6,
    valid_mrz_line,
    valid_nanp,
    valid_url,
)

__all__ = ["InternationalPhoneRecognizer"]

_ALONE_BEFORE = r"(?<![0-9A-Za-z])"
_ALONE_AFTER = r"(?![0-9A-Za-z])"

register_recognizer(
    RegexRecognizer(
        "cn_id", "CN_ID",
        re.compile(_ALONE_BEFORE + r"(?P<pii>[1-9]\d{16}[\dXx])" + _ALONE_AFTER),
        valid_cn_id,
        priority=100,
        min_digits=17,
    )
)

_GROUPED_CARD = (
    r"(?<!\d[ -])(?:\d{4}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?P=s1)\d{4}(?:(?P=s1)\d{1,3})?"  # 4-4-4-4(-3)
    r"|\d{4}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5})"  # 4-6-5 (Amex), 4-6-4 (Diners)
    r"(?![0-9A-Za-z])(?![ -]\d)"
)
register_recognizer(
    RegexRecognizer(
        "bank_card", "BANK_CARD",
        re.compile(_ALONE_BEFORE + r"(?P<pii>\d{13,19}" + _ALONE_AFTER + "|" + _GROUPED_CARD + ")"),
        valid_bank_card,
        priority=90,
        reject_labeled=True,
        min_digits=4,
    )
)

_PASSPORT_WORD = re.compile(r"passport|护照", re.IGNORECASE)
register_recognizer(
    RegexRecognizer(
        "passport_mrz", "PASSPORT",
        # Line 2 (44 characters, five check digits), with line 1 (type, country, name) when it precedes.
        re.compile(r"(?<![A-Z0-9<])(?P<pii>(?:P[A-Z<][A-Z<]{42}[ \t]*\r?\n[ \t]*)?"
                   r"[A-Z0-9<]{9}\d[A-Z<]{3}\d{6}\d[MFX<]\d{6}\d[A-Z0-9<]{14}[0-9<]\d)(?![A-Z0-9<])"),
        lambda candidate: valid_mrz_line(candidate[-44:]),
        priority=95,
        hints=("<",),
    )
)
register_recognizer(
    RegexRecognizer(
        "passport_cn", "PASSPORT",
        # Chinese ordinary passports: E + 8 digits, E + letter (not I/O) + 7 digits, or G + 8 digits.
        # The format alone is too weak, so "passport" / "护照" must appear just before it.
        re.compile(_ALONE_BEFORE + r"(?P<pii>[EG]\d{8}|E[A-HJ-NP-Z]\d{7})" + _ALONE_AFTER),
        priority=85,
        require_before=_PASSPORT_WORD,
        context_window=24,
        min_digits=7,
        gate=_PASSPORT_WORD,
    )
)

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])(?P<pii>[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})(?![A-Za-z0-9-])"
)
register_recognizer(
    RegexRecognizer(
        "email", "EMAIL", _EMAIL, valid_email, priority=80, hints=("@",),
        gate=re.compile(r"@[A-Za-z0-9][A-Za-z0-9-]*\."),  # "@united" (a mention) has no domain
    )
)

_URL_TAIL = ".,;:!?'\"*"


def _trim_url(candidate: str) -> str:
    """Drop the sentence punctuation after a URL, and a closing bracket that the URL did not open."""
    url = candidate
    while url:
        last = url[-1]
        if last in _URL_TAIL or (last == ")" and url.count("(") < url.count(")")) or (
            last == "]" and url.count("[") < url.count("]")
        ):
            url = url[:-1]
        else:
            break
    return url


register_recognizer(
    RegexRecognizer(
        "url", "URL",
        re.compile(r"(?<![A-Za-z0-9@.])(?P<pii>(?:(?:https?|ftp)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+)",
                   re.IGNORECASE),
        valid_url,
        priority=70,
        hints=("://", "www.", "WWW."),
        trim=_trim_url,
    )
)

# Words that say the number after them is a phone number. English ones stand as words
# ("tel" is not "hotel" or "telling"); "landline" and "number" are left out on purpose: they
# also label ids ("order number"), and a labeled order number or amount is never a phone.
CONTACT_CUE = re.compile(
    r"(?<![A-Za-z])(?:call(?:s|ed|ing)?|(?:tele|cell|mobile\s?|smart)?phone(?:s|d)?|tel|mobile|mob|cell"
    r"|text(?:ed)?\s+(?:me|us)|reach\s+(?:me|us)|ring\s+(?:me|us)|contact(?:s|ed|ing)?|whats\s?app|dial(?:ed|ing)?"
    r"|sms|fax)(?![A-Za-z])"
    r"|电话|手机|拨打|联系|致电|微信|来电|打给|短信|热线|座机|传真",
    re.IGNORECASE,
)

register_recognizer(
    RegexRecognizer(
        "phone_cn_mobile", "PHONE",
        # The shape (11 digits from 13x to 19x); the validator wants an allocated prefix (not 154...).
        re.compile(r"(?<![0-9A-Za-z+])(?P<pii>(?:(?:\+|00)86[ -]?)?1[3-9]\d(?P<sep>[ -]?)\d{4}(?P=sep)\d{4})"
                   + _ALONE_AFTER),
        valid_cn_mobile,
        priority=62,
        reject_labeled=True,
        min_digits=4,
        cue=CONTACT_CUE,
    )
)
register_recognizer(
    RegexRecognizer(
        "phone_cn_landline", "PHONE",
        # The shape: an area code and 7-8 digits; the validator wants a local number from 2-9.
        re.compile(_ALONE_BEFORE + r"(?P<pii>(?:\((?:010|02\d|0[3-9]\d{2})\)|(?:010|02\d|0[3-9]\d{2}))"
                   r"[ -]?\d{7,8})" + _ALONE_AFTER),
        valid_cn_landline,
        priority=61,
        reject_labeled=True,
        min_digits=7,
        cue=CONTACT_CUE,
        validate_cued=plausible_cn_landline,
    )
)
register_recognizer(
    RegexRecognizer(
        "phone_nanp", "PHONE",
        # Separators between the groups are required: ten bare digits are more often an id.
        # The shape allows any exchange; the validator refuses N11 and 0/1 exchanges.
        re.compile(r"(?<![0-9A-Za-z+])(?P<pii>(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])"
                   r"\d{3}[ .-]\d{4})" + _ALONE_AFTER),
        valid_nanp,
        priority=60,
        reject_labeled=True,
        min_digits=4,
        cue=CONTACT_CUE,
        validate_cued=plausible_nanp,
    )
)


class InternationalPhoneRecognizer:
    """``+`` numbers in E.164 form with optional separators: ``+44 20 7946 0958``, ``+86-10-6234-5678``.

    The pattern takes the longest run of digits and separators after the plus; the validator
    then tries it, and each shorter prefix that ends at a group boundary, longest first, so a
    number followed by another number ("+44 20 7946 0958 2023") is still found. When no prefix
    is a valid number, one whose country code is set apart from grouped digits
    (``+86 154 1234 5678``, ``+1 (415) 911-0000``) still counts: that shape is a phone number
    whether or not its range is allocated. An ungrouped invalid one (``+1234567``) does not.
    """

    name = "phone_e164"
    entity_type = "PHONE"
    priority = 59
    # A single character class, so the scan is linear (no nested quantifiers to backtrack).
    pattern = re.compile(r"(?<![0-9A-Za-z+])\+[1-9][\d ().-]{5,24}\d")

    def __repr__(self) -> str:
        return "InternationalPhoneRecognizer()"

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if "+" not in text:
            return
        for match in self.pattern.finditer(text):
            start, end = match.span()
            # Candidate ends: the full match, then each position before a separator, longest first,
            # leaving out those that would cut a longer token.
            ends = [stop for stop in [end] + [start + i for i in range(len(match.group()) - 1, 1, -1)
                                              if not match.group()[i].isdigit() and match.group()[i - 1].isdigit()]
                    if not (stop < len(text) and text[stop].isalnum() and text[stop].isascii())]
            stop = self._first(text, start, ends, valid_international_phone)
            if stop is None:
                stop = self._first(text, start, ends, grouped_international_phone)
            if stop is not None:
                yield start, stop

    @staticmethod
    def _first(text: str, start: int, ends: list[int], check: Callable[[str], bool]) -> int | None:
        """The longest end whose number passes ``check`` and is not labeled as an amount or order number."""
        for stop in ends:
            if check(text[start:stop]) and not labeled_as_non_pii(text, start, stop):
                return stop
        return None


register_recognizer(InternationalPhoneRecognizer())

register_recognizer(
    RegexRecognizer(
        "ipv4", "IP",
        re.compile(r"(?<![A-Za-z0-9_.])(?P<pii>(?:\d{1,3}\.){3}\d{1,3})(?![A-Za-z0-9_]|\.\d)"),
        valid_ipv4,
        priority=50,
        hints=(".",),
        min_digits=1,
        gate=re.compile(r"\d\.\d"),
    )
)


def _trim_dot(candidate: str) -> str:
    return candidate.rstrip(".")


register_recognizer(
    RegexRecognizer(
        "ipv6", "IP",
        # Not right after a word character, or after "hex:" (which would start mid-address).
        re.compile(r"(?<![0-9A-Za-z_.])(?<![0-9A-Fa-f:]:)(?P<pii>[0-9A-Fa-f:.]{2,45})(?![0-9A-Za-z_:.])"),
        lambda c: c.count(":") >= 2 and valid_ipv6(c),
        priority=51,
        hints=("::", ":"),
        gate=re.compile(r":[0-9A-Fa-f.]*:"),  # two colons with nothing but address characters between
        trim=_trim_dot,
    )
)
