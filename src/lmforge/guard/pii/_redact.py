"""Detect PII with the registered recognizers and redact it under a :class:`PrivacyPolicy`.

One policy serves every place that stores text: ``lmforge redact`` over files, the
``prepare`` stage (``data.pii: redact``), and the texts serving and monitoring keep.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lmforge.errors import ConfigError
from lmforge.guard._errors import CryptoKeyError
from lmforge.guard.pii import _recognizers  # noqa: F401 - registers the built-in recognizers
from lmforge.guard.pii._registry import RECOGNIZERS, Entity, Recognizer, entity_types

__all__ = [
    "PiiScan",
    "PrivacyPolicy",
    "RedactionResult",
    "detect",
    "redact",
    "redact_texts",
    "scan_texts",
]

MODES = ("mask", "hash", "drop")
_MIN_SALT_CHARS = 16


@dataclass
class PrivacyPolicy:
    """What counts as PII and what to put in its place. Plain data: round-trips to YAML/JSON."""

    mode: Literal["mask", "hash", "drop"] = "mask"
    """``mask`` replaces an entity by its type (``[PHONE]``); ``hash`` by its type and a keyed
    hash (``[PHONE:1f3a9c0b5e2d]``, the same value always gives the same token, so records can
    still be joined); ``drop`` deletes it."""
    entities: list[str] | None = None
    """Entity types to redact (EMAIL, PHONE, CN_ID, BANK_CARD, IP, URL, PASSPORT); all when unset."""
    salt_env: str = "LMFORGE_PII_SALT"
    """Environment variable holding the secret key of ``hash`` mode (at least 16 characters). An
    unkeyed hash of a phone number is reversed by hashing every phone number, so there is none."""

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"pii mode must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if self.entities is not None:
            known = entity_types()
            unknown = [e for e in self.entities if e not in known]
            if unknown:
                problems.append(
                    f"Unknown PII entity type(s) {', '.join(map(repr, unknown))}. Available: {', '.join(known)}."
                )
            if not self.entities:
                problems.append("pii entities is empty; leave it unset to redact every type.")
        if not self.salt_env:
            problems.append("pii salt_env must name an environment variable.")
        if problems:
            raise ConfigError(problems)

    @property
    def types(self) -> frozenset[str]:
        """The entity types this policy redacts."""
        return frozenset(self.entities) if self.entities is not None else frozenset(entity_types())

    def salt(self) -> bytes:
        """The key of ``hash`` mode, read from ``$salt_env``.

        Raises:
            CryptoKeyError: the variable is unset or too short (its value is never shown).
        """
        value = os.environ.get(self.salt_env, "")
        if len(value) < _MIN_SALT_CHARS:
            state = "is not set" if not value else f"holds only {len(value)} characters"
            raise CryptoKeyError(
                f"PII hash mode needs a secret key in ${self.salt_env}, which {state}. Set it to a random "
                f"string of at least {_MIN_SALT_CHARS} characters (e.g. `export {self.salt_env}=$(openssl rand "
                "-hex 32)`) and keep it secret: anyone with it can test guesses against the hashes."
            )
        return value.encode("utf-8")


@dataclass(frozen=True)
class RedactionResult:
    """A redacted text and the entities found, with spans on the original text."""

    text: str
    entities: list[Entity] = field(default_factory=list)


@dataclass(frozen=True)
class PiiScan:
    """How much PII a collection of texts holds (counts only, no values)."""

    n_texts: int
    texts_with_pii: int
    counts: dict[str, int]
    """Entities found per type."""

    def to_dict(self) -> dict[str, object]:
        share = self.texts_with_pii / self.n_texts if self.n_texts else 0.0
        return {"n_texts": self.n_texts, "texts_with_pii": self.texts_with_pii, "share_with_pii": share,
                "counts": dict(self.counts)}


_CHOSEN: dict[frozenset[str] | None, tuple[tuple[Recognizer, ...], list[Recognizer]]] = {}


def _recognizers_for(types: Iterable[str] | None) -> list[Recognizer]:
    """The recognizers of ``types`` (all when None); remembered per set of types until the registry changes."""
    wanted = frozenset(types) if types is not None else None
    registered = tuple(RECOGNIZERS.values())
    hit = _CHOSEN.get(wanted)
    if hit is not None and hit[0] == registered:
        return hit[1]
    chosen = [r for r in registered if wanted is None or r.entity_type in wanted]
    _CHOSEN[wanted] = (registered, chosen)
    return chosen


def detect(text: str, entities: Iterable[str] | None = None) -> list[Entity]:
    """Every PII entity in ``text``, without overlaps, in text order.

    Where spans of different recognizers overlap, the longer one wins (a URL holding an
    e-mail address is one URL), then the higher priority (an 18-digit number that is both a
    valid resident ID and a Luhn-valid card number is a CN_ID).

    Args:
        text: The text to scan.
        entities: Entity types to look for; all registered types when None.
    """
    if not isinstance(text, str):
        raise TypeError(f"detect() needs a str, got {type(text).__name__}.")
    candidates = [
        Entity(r.entity_type, start, end, r.name) for r in _recognizers_for(entities) for start, end in r.find(text)
    ]
    if len(candidates) < 2:
        return candidates
    priority = {name: r.priority for name, r in RECOGNIZERS.items()}
    candidates.sort(key=lambda e: (-(e.end - e.start), -priority.get(e.recognizer, 0), e.start))
    taken: list[Entity] = []
    for cand in candidates:
        if all(cand.end <= t.start or cand.start >= t.end for t in taken):
            taken.append(cand)
    return sorted(taken, key=lambda e: e.start)


def _token(entity: Entity, value: str, mode: str, salt: bytes) -> str:
    if mode == "mask":
        return f"[{entity.type}]"
    if mode == "drop":
        return ""
    digest = hmac.new(salt, f"{entity.type}\0{value}".encode(), hashlib.sha256).hexdigest()
    return f"[{entity.type}:{digest[:12]}]"


def _apply(text: str, found: Sequence[Entity], mode: str, salt: bytes) -> str:
    parts: list[str] = []
    cursor = 0
    for entity in found:
        parts.append(text[cursor : entity.start])
        parts.append(_token(entity, text[entity.start : entity.end], mode, salt))
        cursor = entity.end
    parts.append(text[cursor:])
    return "".join(parts)


def redact(text: str, policy: PrivacyPolicy | None = None, *, salt: bytes | None = None) -> RedactionResult:
    """Replace the PII of ``text`` as ``policy`` says.

    Args:
        text: The original text.
        policy: What to redact and how; ``PrivacyPolicy()`` (mask every type) when None.
        salt: Key of ``hash`` mode; read from ``$policy.salt_env`` when None.

    Returns:
        The redacted text and the entities, whose spans refer to the original ``text``.

    Raises:
        CryptoKeyError: ``hash`` mode without a key.
    """
    policy = policy or PrivacyPolicy()
    if policy.mode == "hash" and salt is None:
        salt = policy.salt()
    found = detect(text, policy.entities)  # None: every registered type
    return RedactionResult(_apply(text, found, policy.mode, salt or b"") if found else text, found)


def redact_texts(
    texts: Sequence[str], policy: PrivacyPolicy | None = None, *, salt: bytes | None = None
) -> tuple[list[str], dict[str, int]]:
    """Redact many texts; the hook the ``prepare`` stage calls for ``data.pii: redact``.

    Returns:
        The redacted texts in input order, and the number of entities found per type.
    """
    policy = policy or PrivacyPolicy()
    if policy.mode == "hash" and salt is None:
        salt = policy.salt()
    counts: Counter[str] = Counter()
    out: list[str] = []
    for text in texts:
        result = redact(text, policy, salt=salt)
        counts.update(e.type for e in result.entities)
        out.append(result.text)
    return out, dict(sorted(counts.items()))


def scan_texts(texts: Iterable[str], entities: Iterable[str] | None = None) -> PiiScan:
    """Count the PII in ``texts`` without changing them (for reports)."""
    types = list(entities) if entities is not None else None
    counts: Counter[str] = Counter()
    n = with_pii = 0
    for text in texts:
        n += 1
        found = detect(text, types)
        if found:
            with_pii += 1
            counts.update(e.type for e in found)
    return PiiScan(n, with_pii, dict(sorted(counts.items())))
