"""EDA: easy data augmentation of the training split (Wei & Zou, EMNLP 2019), seeded, offline.

Each new example applies one of the four EDA operations to a training text, touching
``alpha`` of its words: synonym replacement, random insertion (of a synonym of a word in
the text), random swap, random deletion. Synonyms come from a built-in table
(``synonyms.json``, groups of interchangeable English words), so nothing is downloaded.
Texts mostly in a script written without spaces (at least half of their units, below, are
CJK characters: Chinese, Japanese, Korean) are augmented by swap and deletion only, over
units that never split a word: each
CJK character is one unit, and each run of other non-space characters (a Latin word, a number,
a run of punctuation) is one unit too, carrying its leading whitespace; so "这款iPhone很好" can
become "这iPhone款很好" but never "这款iPohne很好". No dictionary or word segmenter is used.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from importlib import resources

import numpy as np

from lmforge.errors import DataError

__all__ = ["augment", "eda", "synonyms"]

_WORD = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)
# Scripts written without spaces between words (CJK ideographs, kana, hangul).
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# One augmentation unit of a CJK text: a CJK character, or a run of other non-space characters,
# each with the whitespace before it.
_CJK_UNIT = re.compile(f"\\s*(?:[{_CJK_RANGES}]|[^\\s{_CJK_RANGES}]+)")
# Mentions, hashtags and links carry meaning (the airline, the topic): never touched.
_PROTECTED = re.compile(r"^[@#]|://|^www\.", re.I)


@functools.lru_cache(maxsize=1)
def synonyms() -> dict[str, tuple[str, ...]]:
    """The built-in synonym table: lowercase word -> its synonyms (symmetric within each group)."""
    try:
        raw = json.loads(
            resources.files("lmforge.data").joinpath("synonyms.json").read_text(encoding="utf-8")
        )
        groups = raw["groups"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"The built-in synonym table lmforge/data/synonyms.json is damaged ({exc}); reinstall lmforge."
        ) from None
    table: dict[str, dict[str, None]] = {}
    for group in groups:
        for word in group:
            others = table.setdefault(word.lower(), {})
            others.update(dict.fromkeys(w.lower() for w in group if w.lower() != word.lower()))
    return {word: tuple(others) for word, others in table.items() if others}


def _split_word(token: str) -> tuple[str, str, str]:
    match = _WORD.match(token)
    if match is None:  # cannot happen with this pattern; keep the token whole
        return "", token, ""
    prefix, core, suffix = match.groups()
    return prefix, core, suffix


def _synonym_for(token: str, rng: np.random.Generator, table: dict[str, tuple[str, ...]]) -> str | None:
    """A synonym of ``token``'s word, keeping its punctuation and capitalization; None if none."""
    if _PROTECTED.search(token):
        return None
    prefix, core, suffix = _split_word(token)
    options = table.get(core.lower())
    if not options:
        return None
    word = options[int(rng.integers(len(options)))]
    if len(core) > 1 and core.isupper():
        word = word.upper()
    elif core[:1].isupper():
        word = word[:1].upper() + word[1:]
    return prefix + word + suffix


def _count(units: list[str], alpha: float) -> int:
    """Words an operation touches: ``alpha`` of them, at least one (EDA's n = max(1, alpha * l))."""
    return max(1, int(round(alpha * len(units))))


def _replace(
    units: list[str], alpha: float, rng: np.random.Generator, table: dict[str, tuple[str, ...]]
) -> list[str]:
    out, n = list(units), _count(units, alpha)
    done = 0
    for i in rng.permutation(len(units)).tolist():
        if done >= n:
            break
        new = _synonym_for(units[i], rng, table)
        if new is not None:
            out[i] = new
            done += 1
    return out


def _insert(
    units: list[str], alpha: float, rng: np.random.Generator, table: dict[str, tuple[str, ...]]
) -> list[str]:
    out = list(units)
    for _ in range(_count(units, alpha)):
        for _attempt in range(10):  # as in EDA: a few tries to find a word that has a synonym
            new = _synonym_for(out[int(rng.integers(len(out)))], rng, table)
            if new is not None:
                out.insert(int(rng.integers(len(out) + 1)), _split_word(new)[1].lower())
                break
    return out


def _swap(
    units: list[str], alpha: float, rng: np.random.Generator, table: dict[str, tuple[str, ...]]
) -> list[str]:
    out = list(units)
    if len(out) < 2:
        return out
    for _ in range(_count(units, alpha)):
        i, j = rng.choice(len(out), size=2, replace=False).tolist()
        out[i], out[j] = out[j], out[i]
    return out


def _delete(
    units: list[str], alpha: float, rng: np.random.Generator, table: dict[str, tuple[str, ...]]
) -> list[str]:
    if len(units) < 2:
        return list(units)
    drop = rng.random(len(units)) < alpha  # EDA deletes each word with probability alpha
    out = [u for u, d in zip(units, drop, strict=True) if not d or _PROTECTED.search(u)]
    return out or [units[int(rng.integers(len(units)))]]


Operation = Callable[[list[str], float, np.random.Generator, dict[str, tuple[str, ...]]], list[str]]
_WORD_OPS: dict[str, Operation] = {"synonym": _replace, "insert": _insert, "swap": _swap, "delete": _delete}
_CHAR_OPS: dict[str, Operation] = {"swap": _swap, "delete": _delete}


def _join_units(units: list[str]) -> str:
    """Units back into text; two non-CJK units that a swap made neighbours get a space between them."""
    out = ""
    for unit in units:
        if out and unit[:1].isalnum() and out[-1:].isalnum() and not _CJK.match(unit[0]) and not _CJK.match(out[-1]):
            out += " "
        out += unit
    return out.strip()


def _mostly_cjk(text: str) -> bool:
    """At least half of the text's units (see ``_CJK_UNIT``) are CJK characters: augment it by units."""
    cjk = len(_CJK.findall(text))
    return cjk > 0 and 2 * cjk >= len(_CJK_UNIT.findall(text))


def eda(text: str, *, alpha: float, rng: np.random.Generator) -> str:
    """One EDA variant of ``text``, or ``text`` itself when no operation changes it.

    The operation is drawn at random; if it leaves the text unchanged (no word with a
    synonym, a one-word text) the others are tried in random order.
    """
    by_chars = _mostly_cjk(text)
    units = _CJK_UNIT.findall(text) if by_chars else text.split(" ")
    ops = _CHAR_OPS if by_chars else _WORD_OPS
    table = synonyms()
    names = list(ops)
    for k in rng.permutation(len(names)).tolist():
        new_units = ops[names[k]](units, alpha, rng, table)
        new = _join_units(new_units) if by_chars else " ".join(new_units)
        if new != text:
            return new
    return text


def augment(
    texts: list[str], labels: list[str], *, copies: int, alpha: float, seed: int
) -> tuple[list[str], list[str]]:
    """``copies`` EDA variants of every training text, with the label of their source.

    Variants identical to their source, or to an earlier variant of it, are not kept.

    Returns:
        The new texts and their labels (the originals are not included).
    """
    rng = np.random.default_rng(seed)
    new_texts: list[str] = []
    new_labels: list[str] = []
    for text, label in zip(texts, labels, strict=True):
        seen = {text}
        for _ in range(copies):
            variant = eda(text, alpha=alpha, rng=rng)
            if variant not in seen:
                seen.add(variant)
                new_texts.append(variant)
                new_labels.append(label)
    return new_texts, new_labels
