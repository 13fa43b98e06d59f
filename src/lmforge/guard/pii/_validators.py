"""Validators: the checks that tell real identifiers from look-alike numbers.

Each takes the candidate text a pattern matched and returns True when it is a valid
identifier of its kind. Pure functions of the string, no I/O, no imports of optional packages
except :func:`valid_international_phone`, which uses ``phonenumbers`` when it is installed.

The ``plausible_*`` and :func:`grouped_international_phone` checks are looser: they ask for
the shape of a phone number, not a number in an allocated range. A mistyped or not yet
allocated number is still someone's personal data, so they decide where the context says
it is a phone number (a contact cue, or a ``+`` country code set apart from grouped digits).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from functools import lru_cache
from types import ModuleType
from urllib.parse import urlsplit

__all__ = [
    "grouped_international_phone",
    "luhn_ok",
    "mrz_check_digit",
    "plausible_cn_landline",
    "plausible_nanp",
    "valid_bank_card",
    "valid_cn_id",
    "valid_cn_landline",
    "valid_cn_mobile",
    "valid_email",
    "valid_international_phone",
    "valid_ipv4",
    "valid_ipv6",
    "valid_mrz_line",
    "valid_nanp",
    "valid_url",
]

_NON_DIGIT = re.compile(r"\D")

# --- Chinese resident identity card (GB 11643-1999) ------------------------------------------
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
# First two digits: province-level division codes (GB/T 2260), incl. Taiwan, Hong Kong, Macau.
_CN_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83"
    .split()
)


def valid_cn_id(candidate: str) -> bool:
    """An 18-character resident ID: province code, a real birth date not in the future, MOD 11-2 check."""
    value = candidate.upper()
    if len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789X":
        return False
    if value[:2] not in _CN_PROVINCES:
        return False
    try:
        born = _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:  # 2023-02-30 and friends
        return False
    if not _dt.date(1900, 1, 1) <= born <= _dt.date.today():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == value[17]


# --- payment cards -----------------------------------------------------------------------------
def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a digit string holds."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (prefix low, prefix high, allowed lengths): issuer identification ranges of the major networks.
_IIN_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("62", "62", frozenset({16, 17, 18, 19})),  # UnionPay (most Chinese bank cards)
    ("6011", "6011", frozenset({16, 17, 18, 19})),  # Discover
    ("644", "649", frozenset({16, 17, 18, 19})),
    ("65", "65", frozenset({16, 17, 18, 19})),
    ("3528", "3589", frozenset({16, 17, 18, 19})),  # JCB
    ("36", "36", frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    ("300", "305", frozenset({14, 15, 16, 17, 18, 19})),
    ("38", "39", frozenset({14, 15, 16, 17, 18, 19})),
    ("2200", "2204", frozenset({16, 17, 18, 19})),  # Mir
    ("5018", "5018", frozenset(range(12, 20))),  # Maestro
    ("5020", "5020", frozenset(range(12, 20))),
    ("5038", "5038", frozenset(range(12, 20))),
    ("5893", "5893", frozenset(range(12, 20))),
    ("6304", "6304", frozenset(range(12, 20))),
    ("6759", "6759", frozenset(range(12, 20))),
    ("6761", "6763", frozenset(range(12, 20))),
)


def _known_issuer(digits: str) -> bool:
    for low, high, lengths in _IIN_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def valid_bank_card(candidate: str) -> bool:
    """13-19 digits (spaces or dashes between groups), a known issuer prefix and a valid Luhn sum."""
    digits = _NON_DIGIT.sub("", candidate)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    return _known_issuer(digits) and luhn_ok(digits)


# --- phone numbers -----------------------------------------------------------------------------
_CN_MOBILE_PREFIX = re.compile(r"^1(?:3\d|4[5-9]|5[0-35-9]|6[2567]|7[0-8]|8\d|9\d)$")


def valid_cn_mobile(candidate: str) -> bool:
    """An 11-digit mainland mobile number (optionally +86) with an allocated 3-digit prefix."""
    digits = _NON_DIGIT.sub("", candidate)
    if candidate.lstrip().startswith(("+86", "0086")) or (len(digits) == 13 and digits.startswith("86")):
        digits = digits[-11:]
    return len(digits) == 11 and bool(_CN_MOBILE_PREFIX.match(digits[:3]))


def valid_cn_landline(candidate: str) -> bool:
    """Area code (010, 02X: 8-digit local numbers; 0XXX: 7 or 8) plus a local number not starting with 0/1."""
    if candidate.count("(") != candidate.count(")"):
        return False
    digits = _NON_DIGIT.sub("", candidate)
    area = 3 if digits.startswith(("010", "02")) else 4
    local = digits[area:]
    if local[:1] in ("0", "1", ""):
        return False
    return len(local) == 8 if area == 3 else len(local) in (7, 8)


def plausible_cn_landline(candidate: str) -> bool:
    """The shape of a landline (area code, 7 or 8 more digits, balanced brackets), in any range."""
    digits = _NON_DIGIT.sub("", candidate)
    area = 3 if digits.startswith(("010", "02")) else 4
    return candidate.count("(") == candidate.count(")") and len(digits) - area in (7, 8)


def _nanp_part_ok(part: str) -> bool:
    # Area codes and exchanges start with 2-9; N11 codes (411, 911...) are service numbers.
    return part[0] in "23456789" and part[1:] != "11"


def valid_nanp(candidate: str) -> bool:
    """A North American number: area code and exchange start 2-9, neither is N11, area code's 2nd digit is not 9."""
    if candidate.count("(") != candidate.count(")"):
        return False
    digits = _NON_DIGIT.sub("", candidate)
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10:
        return False
    area, exchange = digits[:3], digits[3:6]
    return _nanp_part_ok(area) and area[1] != "9" and _nanp_part_ok(exchange)


def plausible_nanp(candidate: str) -> bool:
    """The shape of a North American number (ten digits, or 1 and ten), N11 and unassigned ranges included."""
    digits = _NON_DIGIT.sub("", candidate)
    return candidate.count("(") == candidate.count(")") and (
        len(digits) == 10 or (len(digits) == 11 and digits[0] == "1")
    )


# Country calling codes assigned by the ITU (as in the phonenumbers metadata); the fallback
# check when phonenumbers is not installed.
_CALLING_CODES = frozenset(
    """1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 64 65 66
    81 82 84 86 90 91 92 93 94 95 98 211 212 213 216 218 220 221 222 223 224 225 226 227 228 229 230 231 232
    233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255 256 257 258
    260 261 262 263 264 265 266 267 268 269 290 291 297 298 299 350 351 352 353 354 355 356 357 358 359 370
    371 372 373 374 375 376 377 378 380 381 382 383 385 386 387 389 420 421 423 500 501 502 503 504 505 506
    507 508 509 590 591 592 593 594 595 596 597 598 599 670 672 673 674 675 676 677 678 679 680 681 682 683
    685 686 687 688 689 690 691 692 800 808 850 852 853 855 856 870 878 880 881 882 883 886 888 960 961 962
    963 964 965 966 967 968 970 971 972 973 974 975 976 977 979 992 993 994 995 996 998""".split()
)


@lru_cache(maxsize=1)
def _phonenumbers() -> ModuleType | None:
    try:
        import phonenumbers
    except ImportError:
        return None
    return phonenumbers


def valid_international_phone(candidate: str) -> bool:
    """A ``+``-prefixed E.164 number: 7-15 digits after the plus.

    With ``phonenumbers`` installed (``pip install 'lmforge[guard]'``) the number must be a
    valid number of its country; without it, the country calling code must be assigned.
    Without the package more strings pass, so redaction errs towards removing too much.
    """
    if candidate.count("(") != candidate.count(")"):
        return False
    digits = _NON_DIGIT.sub("", candidate)
    if not 7 <= len(digits) <= 15:
        return False
    lib = _phonenumbers()
    if lib is None:
        return any(digits[:n] in _CALLING_CODES for n in (1, 2, 3))
    try:
        number = lib.parse("+" + digits, None)
    except Exception:  # phonenumbers raises NumberParseException for any unparsable input
        return False
    return bool(lib.is_valid_number(number))


_GROUP_SEPARATORS = frozenset({" ", "-", ".", "(", ")", " (", ") ", ")-", ")."})
_DIGIT_GROUPS = re.compile(r"(\d+)")


def grouped_international_phone(candidate: str) -> bool:
    """``+CC`` set apart from grouped digits (``+86 154 1234 5678``, ``+1 (415) 911-0000``), valid or not.

    The country calling code must be assigned and followed by a separator, the whole number
    must have 8 to 15 digits, one bracket pair at most, and dots may not mix with other
    separators (``+1.23 2.50`` is two decimals, not a number).
    """
    if not candidate.startswith("+") or candidate.count("(") != candidate.count(")") or candidate.count("(") > 1:
        return False
    if candidate.find("(") > candidate.find(")"):
        return False
    parts = _DIGIT_GROUPS.split(candidate[1:])  # "", digits, separator, digits, ..., ""
    groups, separators = parts[1::2], parts[2:-1:2]
    if len(groups) < 2 or parts[0] or parts[-1] or groups[0] not in _CALLING_CODES:
        return False
    if not all(sep in _GROUP_SEPARATORS for sep in separators):
        return False
    if any("." in sep for sep in separators) and not all(sep == "." for sep in separators):
        return False
    return 8 <= sum(map(len, groups)) <= 15


# --- e-mail, URL, IP ----------------------------------------------------------------------------
def valid_email(candidate: str) -> bool:
    """Length limits of RFC 5321 (local part 64, address 254), no empty dot-atoms, alphabetic TLD."""
    local, _, domain = candidate.rpartition("@")
    if not local or not domain or len(local) > 64 or len(candidate) > 254:
        return False
    if ".." in local or local.startswith(".") or local.endswith("."):
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and labels[-1].isalpha() and all(labels)


def valid_ipv4(candidate: str) -> bool:
    """A dotted-quad IPv4 address without leading zeros."""
    try:
        ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    return True


def valid_ipv6(candidate: str) -> bool:
    """An IPv6 address (any standard text form) with at least one hex digit."""
    if not any(c in "0123456789abcdefABCDEF" for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def valid_url(candidate: str) -> bool:
    """An http(s)/ftp URL (or www. address) whose host is a domain name, localhost or an IP address."""
    url = candidate if "://" in candidate else "http://" + candidate
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost" or valid_ipv4(host) or valid_ipv6(host):
        return True
    labels = host.split(".")
    return len(labels) >= 2 and labels[-1].isalpha() and all(_HOST_LABEL.match(label) for label in labels)


# --- machine-readable passports (ICAO Doc 9303) ----------------------------------------------------
def _mrz_value(ch: str) -> int:
    if ch.isdigit():
        return int(ch)
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    return 0  # the filler '<'


def mrz_check_digit(field: str) -> str:
    """ICAO 9303 check digit of an MRZ field (weights 7, 3, 1)."""
    return str(sum(_mrz_value(c) * (7, 3, 1)[i % 3] for i, c in enumerate(field)) % 10)


def valid_mrz_line(candidate: str) -> bool:
    """Line 2 of a passport MRZ (TD3, 44 characters) with all five check digits right."""
    line = candidate
    if len(line) != 44:
        return False
    checks = (
        (line[0:9], line[9]),  # document number
        (line[13:19], line[19]),  # date of birth
        (line[21:27], line[27]),  # date of expiry
        (line[0:10] + line[13:20] + line[21:43], line[43]),  # composite
    )
    if any(mrz_check_digit(field) != digit for field, digit in checks):
        return False
    personal, digit = line[28:42], line[42]
    # An empty personal number may carry '<' or 0 as its check digit.
    return mrz_check_digit(personal) == digit or (set(personal) == {"<"} and digit in "<0")
