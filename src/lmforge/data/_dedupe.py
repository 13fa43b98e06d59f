"""Exact and near-duplicate detection within a table, and leakage between splits."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmforge.data._minhash import jaccard, minhash_signatures, near_duplicate_pairs

__all__ = ["Duplicates", "Leakage", "find_duplicates", "find_leakage", "match_key"]

logger = logging.getLogger(__name__)

MAX_CONFLICT_EXAMPLES = 20
_MEMBERS_SHOWN = 5


def match_key(text: str) -> str:
    """The form two texts are compared in: the cleaned text, casefolded."""
    return text.casefold()


@dataclass
class Duplicates:
    """Which rows duplicate an earlier one, and which duplicate groups disagree on the label."""

    keep: np.ndarray
    """Boolean per row: first occurrence of its group (always True for unique rows)."""
    representative: np.ndarray
    """Per row, the index of the kept row it duplicates (itself when kept)."""
    exact: int
    """Rows whose matching key equals an earlier row's."""
    near: int
    """Further rows within the threshold of an earlier kept row."""
    conflicting_groups: int
    """Duplicate groups whose members carry more than one label."""
    majority: dict[int, str] = field(default_factory=dict)
    """Kept row -> the most frequent label of its group, for groups whose labels disagree
    (ties go to the kept row's own label)."""
    conflict_examples: list[dict[str, Any]] = field(default_factory=list)
    """Up to 20 conflicting groups: the kept text, its duplicates and the labels."""
    signatures: np.ndarray | None = None
    """MinHash signature of every row (None when near-duplicate detection is off)."""


def find_duplicates(texts: list[str], labels: list[str], *, threshold: float, seed: int = 0) -> Duplicates:
    """Find exact and near duplicates; the first occurrence of each group is the one kept.

    Exact duplicates share :func:`match_key`. Near duplicates are distinct keys whose
    estimated Jaccard similarity over character 5-grams is at least ``threshold``; a row is
    a near duplicate when it is that close to an earlier row that is itself kept, so kept
    rows never form a near-duplicate pair with each other (no chaining through dropped
    rows). ``threshold >= 1`` turns near-duplicate detection off.
    """
    n = len(texts)
    keys = [match_key(t) for t in texts]
    first: dict[str, int] = {}
    exact_rep = np.fromiter((first.setdefault(k, i) for i, k in enumerate(keys)), dtype=np.int64, count=n)
    unique = np.flatnonzero(exact_rep == np.arange(n))
    position = np.empty(n, dtype=np.int64)  # row of a unique key -> its index in `unique`
    position[unique] = np.arange(len(unique))
    parent = np.arange(len(unique))  # per unique key: the unique key it is a near duplicate of
    signatures = None
    if threshold < 1.0 and len(unique) > 1:
        unique_sig = minhash_signatures([keys[i] for i in unique], seed=seed)
        lo, hi, _ = near_duplicate_pairs(unique_sig, threshold)
        kept = np.ones(len(unique), dtype=bool)
        # Pairs come sorted by the later row, so when row j is decided every earlier row's
        # fate is final.
        for i, j in zip(lo.tolist(), hi.tolist(), strict=True):
            if kept[i] and kept[j] and jaccard(keys[unique[i]], keys[unique[j]]) >= threshold:
                kept[j] = False
                parent[j] = i
        signatures = unique_sig[position[exact_rep]]
    representative = unique[parent[position[exact_rep]]]
    keep = representative == np.arange(n)
    near = int(np.count_nonzero(parent != np.arange(len(unique))))
    result = Duplicates(
        keep=keep,
        representative=representative,
        exact=n - len(unique),
        near=near,
        conflicting_groups=0,
        signatures=signatures,
    )
    _conflicts(result, texts, labels, exact_rep)
    logger.info(
        "%d rows: %d exact and %d near duplicates (threshold %.2f), %d groups with conflicting labels",
        n,
        result.exact,
        result.near,
        threshold,
        result.conflicting_groups,
    )
    return result


def _conflicts(result: Duplicates, texts: list[str], labels: list[str], exact_rep: np.ndarray) -> None:
    groups: dict[int, list[int]] = defaultdict(list)
    for row in np.flatnonzero(~result.keep).tolist():
        groups[int(result.representative[row])].append(row)
    for rep, members in groups.items():
        counts = Counter(labels[i] for i in (rep, *members))
        if len(counts) < 2:
            continue
        result.conflicting_groups += 1
        top = max(counts.values())
        result.majority[rep] = labels[rep] if counts[labels[rep]] == top else max(counts, key=lambda label: counts[label])
        if len(result.conflict_examples) < MAX_CONFLICT_EXAMPLES:
            result.conflict_examples.append(
                {
                    "kept": {"text": texts[rep], "label": labels[rep], "majority_label": result.majority[rep]},
                    "duplicates": [
                        {
                            "text": texts[i],
                            "label": labels[i],
                            "kind": "exact" if exact_rep[i] == rep else "near",
                        }
                        for i in members[:_MEMBERS_SHOWN]
                    ],
                    "size": 1 + len(members),
                    "labels": dict(sorted(counts.items())),
                }
            )


@dataclass
class Leakage:
    """Rows of a held-out split that duplicate a training text."""

    exact: np.ndarray
    """Boolean per held-out row: its matching key is a training key."""
    near: np.ndarray
    """Boolean per held-out row: not exact, but within the threshold of a training text."""


def find_leakage(
    train_texts: list[str],
    other_texts: list[str],
    *,
    threshold: float,
    train_sig: np.ndarray | None = None,
    other_sig: np.ndarray | None = None,
    seed: int = 0,
) -> Leakage:
    """Which rows of ``other_texts`` (val or test) duplicate a training text, exactly or nearly.

    Signatures already computed for either side can be passed in; they must come from
    :func:`minhash_signatures` with the same ``seed``.
    """
    train_keys = {match_key(t) for t in train_texts}
    exact = np.fromiter((match_key(t) in train_keys for t in other_texts), dtype=bool, count=len(other_texts))
    near = np.zeros(len(other_texts), dtype=bool)
    rest = np.flatnonzero(~exact)
    if threshold < 1.0 and len(rest) and train_texts:
        if train_sig is None:
            train_sig = minhash_signatures([match_key(t) for t in train_texts], seed=seed)
        if other_sig is None:
            rest_sig = minhash_signatures([match_key(other_texts[i]) for i in rest], seed=seed)
        else:
            rest_sig = other_sig[rest]
        split = len(train_sig)
        lo, hi, _ = near_duplicate_pairs(np.vstack([train_sig, rest_sig]), threshold, split=split)
        for i, j in zip(lo.tolist(), hi.tolist(), strict=True):
            row = int(rest[j - split])
            if not near[row] and jaccard(match_key(train_texts[i]), match_key(other_texts[row])) >= threshold:
                near[row] = True
    return Leakage(exact=exact, near=near)
