"""PII detection and redaction: one registry of validated recognizers, English and Chinese.

    >>> from lmforge.guard.pii import PrivacyPolicy, redact
    >>> redact("call 138-1234-5678 or mail li@example.com").text
    'call [PHONE] or mail [EMAIL]'

Entity types: EMAIL, PHONE, CN_ID, BANK_CARD, IP, URL, PASSPORT. Pure standard library;
``phonenumbers`` (the ``guard`` extra) sharpens the check of international numbers.
"""

from lmforge.guard.pii._files import RedactFileSummary, redact_file
from lmforge.guard.pii._redact import (
    PiiScan,
    PrivacyPolicy,
    RedactionResult,
    detect,
    redact,
    redact_texts,
    scan_texts,
)
from lmforge.guard.pii._registry import (
    RECOGNIZERS,
    Entity,
    Recognizer,
    RegexRecognizer,
    entity_types,
    get_recognizer,
    register_recognizer,
)

__all__ = [
    "RECOGNIZERS",
    "Entity",
    "PiiScan",
    "PrivacyPolicy",
    "Recognizer",
    "RedactFileSummary",
    "RedactionResult",
    "RegexRecognizer",
    "detect",
    "entity_types",
    "get_recognizer",
    "redact",
    "redact_file",
    "redact_texts",
    "register_recognizer",
    "scan_texts",
]
