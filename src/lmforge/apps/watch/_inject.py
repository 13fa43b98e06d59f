"""Synthetic incidents: seeded surges of negative texts planted into a calm stream.

A surge takes one window of the calm stream and adds ``f x n`` texts drawn from a held-out pool
of negative texts (``n`` the window's own count, ``f`` drawn from ``size``), at uniform times
inside that window. Surges start after ``warmup`` windows (so every detector has its baseline)
and are ``gap`` windows apart. The incident labels it returns are what ``lmforge watch eval``
scores alerts against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmforge.apps.watch._aggregate import ALL_TOPICS
from lmforge.apps.watch._sources import StreamRow
from lmforge.apps.watch._time import iso, window_start
from lmforge.errors import DataError

__all__ = ["calm_stream", "inject_surges"]


def calm_stream(texts: Sequence[str], *, start: float, window_s: float, per_window: int, seed: int = 0,
                windows: int | None = None) -> list[StreamRow]:
    """Dated rows for undated texts: ``per_window`` texts per window on average (Poisson), uniform
    times inside each window, starting at ``start``. Every text is used once, in a seeded order; or,
    with ``windows``, that many windows are filled with texts drawn with replacement (a calm stream
    longer than the texts at hand, whose windows are still independent draws).

    Raises:
        DataError: ``texts`` is empty, or ``windows`` is below 1.
    """
    if not texts:
        raise DataError("There are no texts to make a calm stream of.")
    if windows is not None and windows < 1:
        raise DataError(f"A calm stream needs at least 1 window, got {windows}.")
    rng = np.random.default_rng(seed)
    rows: list[StreamRow] = []
    if windows is not None:
        for w in range(windows):
            for j in rng.integers(0, len(texts), size=max(1, int(rng.poisson(per_window)))):
                rows.append(StreamRow(float(start + (w + rng.random()) * window_s), texts[int(j)]))
        rows.sort(key=lambda r: r.time)
        return rows
    order = rng.permutation(len(texts))
    i, w = 0, 0
    while i < len(order):
        k = max(1, int(rng.poisson(per_window)))
        for j in order[i:i + k]:
            rows.append(StreamRow(float(start + (w + rng.random()) * window_s), texts[int(j)]))
        i, w = i + k, w + 1
    rows.sort(key=lambda r: r.time)
    return rows


def inject_surges(rows: Sequence[StreamRow], pool: Sequence[str], *, surges: int, seed: int, window_s: float,
                  size: tuple[float, float] = (0.3, 1.0), warmup: int = 10, gap: int = 3,
                  min_added: int = 5) -> tuple[list[StreamRow], list[dict[str, Any]]]:
    """The calm ``rows`` with ``surges`` surges planted, and one incident label per surge (``topic``,
    ``start``, ``end``; and ``added``, the texts planted, and ``window_texts``, the window's own).

    Raises:
        DataError: the pool is empty, or the stream has too few windows for that many surges.
    """
    if not pool:
        raise DataError("The pool of negative texts to inject is empty.")
    rng = np.random.default_rng(seed)
    counts = Counter(window_start(r.time, window_s) for r in rows)
    starts = sorted(counts)[warmup:]
    chosen: list[float] = []
    for index in rng.permutation(len(starts)):
        s = starts[int(index)]
        if all(abs(s - c) >= gap * window_s for c in chosen):
            chosen.append(s)
        if len(chosen) == surges:
            break
    if len(chosen) < surges:
        raise DataError(
            f"The calm stream has {len(counts)} windows of {window_s:g} s; {surges} surges {gap} windows apart after "
            f"{warmup} warm-up windows fit only {len(chosen)}. Give a longer stream or fewer surges."
        )
    out = list(rows)
    incidents = []
    for s in sorted(chosen):
        k = max(min_added, round(rng.uniform(*size) * counts[s]))
        for j in rng.choice(len(pool), size=k, replace=k > len(pool)):
            out.append(StreamRow(float(s + rng.random() * window_s), pool[int(j)]))
        incidents.append({"topic": ALL_TOPICS, "start": iso(s), "end": iso(s + window_s), "added": k,
                          "window_texts": counts[s]})
    out.sort(key=lambda r: r.time)
    return out, incidents
