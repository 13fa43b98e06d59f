"""MinHash signatures over character shingles and LSH banding, in NumPy.

Plain functions rather than a fitted transform: the hash permutations are a pure function
of ``(seed, num_perm)``, so signatures computed in separate calls (train, then test) are
comparable without carrying state around.

The estimated Jaccard similarity of two texts is the fraction of signature positions on
which they agree (Broder, 1997). Candidate pairs come from LSH banding: signatures are cut
into ``bands`` bands of ``rows`` positions and texts that agree on a whole band share a
bucket (Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3). Every candidate
is then verified against the threshold, so banding only decides what gets looked at.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["NGRAM", "NUM_PERM", "jaccard", "lsh_params", "minhash_signatures", "near_duplicate_pairs"]

NUM_PERM = 128
"""Hash functions per signature: the estimate's standard error is about sqrt(J(1-J)/128) <= 0.045."""
NGRAM = 5
"""Characters per shingle."""

_EMPTY = np.uint64(0xFFFFFFFF)
_M32 = np.uint64(0xFFFFFFFF)
_POLY = np.uint64(0x100000001B3)  # FNV-64 prime, the base of the rolling shingle hash
# Shingles per block when taking minima. A (block, num_perm) uint64 buffer of 512 KiB,
# reused, stays in cache: 3x faster here than 32 MiB blocks allocated afresh.
_BLOCK = 512
# Characters hashed into shingles at a time: bounds the code-point arrays (~8 bytes each)
# whatever the corpus size.
_BATCH_CHARS = 1 << 20
# In a bucket, each text is paired with at most this many neighbours (in row order), so a
# bucket of thousands of identical texts costs O(n * window), not O(n^2).
_WINDOW = 64


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer, in place: spreads every input bit over the 64 output bits."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _shingles(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every character ``ngram`` of every text, and the text each belongs to.

    A text shorter than ``ngram`` is one shingle (itself); an empty text has none.
    """
    pad = ngram - 1
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    # Every text is followed by `pad` NULs, so a window never reaches into the next text
    # and a short text's single window is the text plus padding.
    joined = ("\0" * pad).join(texts) + "\0" * pad
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    width = len(codes) - pad
    h = codes[:width].copy()
    for k in range(1, ngram):
        h *= _POLY
        h += codes[k : width + k]
    _mix(h)
    starts = np.concatenate(([0], np.cumsum(lengths + pad)[:-1])) if len(texts) else lengths
    per_text = np.where(lengths > 0, np.maximum(lengths - pad, 1), 0)
    owner = np.repeat(np.arange(len(texts)), per_text)
    first = np.concatenate(([0], np.cumsum(per_text)[:-1])) if len(texts) else per_text
    positions = np.repeat(starts, per_text) + (np.arange(len(owner)) - np.repeat(first, per_text))
    return (h[positions] ^ (h[positions] >> np.uint64(32))) & _M32, owner


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)  # odd multipliers
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signatures(
    texts: list[str], *, num_perm: int = NUM_PERM, ngram: int = NGRAM, seed: int = 0
) -> np.ndarray:
    """MinHash signatures of ``texts`` over character ``ngram`` shingles.

    Each hash function is a multiply-shift hash ``(a * x + b) mod 2**64 >> 32`` of the
    shingle's 32-bit hash (Dietzfelbinger et al., 1997), with ``a, b`` drawn from ``seed``.

    Returns:
        ``(len(texts), num_perm)`` uint32 array. Texts with no shingles (empty) get all-ones
        rows, which match nothing but other empty texts.
    """
    a, b = _permutations(num_perm, seed)
    sig = np.full((len(texts), num_perm), _EMPTY, dtype=np.uint64)
    buffer = np.empty((_BLOCK, num_perm), dtype=np.uint64)
    for first, last in _batches(texts):
        hashes, owner = _shingles(texts[first:last], ngram)
        owner += first
        for lo in range(0, len(hashes), _BLOCK):
            x, own = hashes[lo : lo + _BLOCK], owner[lo : lo + _BLOCK]
            values = buffer[: len(x)]  # (S, P)
            np.multiply(x[:, None], a, out=values)
            values += b
            values >>= np.uint64(32)
            cuts = np.flatnonzero(np.concatenate(([True], own[1:] != own[:-1])))
            ids = own[cuts]
            # A text may straddle two blocks, so merge with what an earlier block found.
            sig[ids] = np.minimum(sig[ids], np.minimum.reduceat(values, cuts, axis=0))
    return sig.astype(np.uint32)


def _batches(texts: list[str]) -> list[tuple[int, int]]:
    """Consecutive ranges of texts of about ``_BATCH_CHARS`` characters (at least one text each)."""
    out, first, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= _BATCH_CHARS:
            out.append((first, i + 1))
            first, size = i + 1, 0
    if first < len(texts):
        out.append((first, len(texts)))
    return out


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid-rule integral (np.trapezoid is NumPy 2 only, np.trapz deprecated there)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """Bands and rows per band for ``threshold``, minimizing weighted false positives + negatives.

    The probability that two texts of Jaccard similarity ``s`` share a bucket is
    ``1 - (1 - s**rows)**bands``. Misses (pairs above the threshold that never become
    candidates) weigh three times false candidates, because every candidate is verified.
    """
    s = np.linspace(0.0, 1.0, 401)
    below, above = s <= threshold, s >= threshold
    best, best_cost = (1, num_perm), np.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            hit = 1.0 - (1.0 - s**rows) ** bands
            false_pos = _area(hit[below], s[below])
            false_neg = _area(1.0 - hit[above], s[above])
            cost = 0.25 * false_pos + 0.75 * false_neg
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


def _candidates(sig: np.ndarray, bands: int, rows: int, split: int | None) -> tuple[np.ndarray, np.ndarray]:
    n = len(sig)
    found: list[np.ndarray] = []
    for band in range(bands):
        key = np.full(n, band, dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            key ^= sig[:, col].astype(np.uint64)
            _mix(key)
        order = np.argsort(key, kind="stable")  # equal keys stay in row order
        ordered = key[order]
        for d in range(1, min(_WINDOW, n - 1) + 1):
            same = np.flatnonzero(ordered[:-d] == ordered[d:])
            if not len(same):
                break  # sorted keys: no run of equal keys is longer than d
            i, j = order[same], order[same + d]
            lo, hi = np.minimum(i, j), np.maximum(i, j)
            if split is not None:
                keep = (lo < split) & (hi >= split)
                lo, hi = lo[keep], hi[keep]
            found.append(lo.astype(np.int64) * n + hi)
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    codes = np.unique(np.concatenate(found))  # sorted by (lo, hi)
    return codes // n, codes % n


def near_duplicate_pairs(
    sig: np.ndarray, threshold: float, *, split: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows of ``sig`` whose estimated Jaccard similarity is at least ``threshold``.

    Args:
        sig: signatures from :func:`minhash_signatures`.
        threshold: estimated Jaccard similarity at or above which a pair is kept.
        split: when set, only pairs with one row below ``split`` and one at or above it
            (e.g. train rows first, then test rows).

    Returns:
        ``(i, j, similarity)`` with ``i < j``, sorted by ``j`` then ``i``.
    """
    if len(sig) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    bands, rows = lsh_params(float(threshold), sig.shape[1])
    lo, hi = _candidates(sig, bands, rows, split)
    sims = np.empty(len(lo))
    for start in range(0, len(lo), 1 << 16):
        part = slice(start, start + (1 << 16))
        sims[part] = (sig[lo[part]] == sig[hi[part]]).mean(axis=1)
    keep = sims >= threshold - 1e-9
    lo, hi, sims = lo[keep], hi[keep], sims[keep]
    order = np.lexsort((lo, hi))
    return lo[order], hi[order], sims[order]


def jaccard(a: str, b: str, ngram: int = NGRAM) -> float:
    """Exact Jaccard similarity of the character ``ngram`` sets of two texts.

    MinHash estimates are off by up to ~0.045 (one standard error); candidate pairs are
    confirmed with this before a text is dropped, so an 0.80-similar pair is not merged at 0.9.
    """

    def grams(text: str) -> set[str]:
        return {text[i : i + ngram] for i in range(max(1, len(text) - ngram + 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y) if x or y else 1.0
