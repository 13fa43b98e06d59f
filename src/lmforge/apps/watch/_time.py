"""Timestamps of stream rows and the windows they fall in.

Accepted: ISO-8601 (``2013-04-15``, ``2013-04-15T09:30:00Z``, ``2013-04-15 09:30+02:00``; a time
without an offset is UTC), the gold-news day-first forms ``dd-mm-yyyy`` and ``d/m/yyyy`` (and ``dd.mm.yyyy``), ``yyyy/mm/dd``, and
Unix epoch seconds given as a JSON number. A year outside 1900-2200 is malformed, not a date:
the gold-news file holds rows like ``0201-04-27`` that ISO parsing alone would read as year 201.
"""

from __future__ import annotations

import datetime as dt
import math
import re

__all__ = ["WINDOW_ANCHOR", "iso", "parse_time", "window_start"]

WINDOW_ANCHOR = dt.datetime(1970, 1, 5, tzinfo=dt.UTC).timestamp()
"""Windows are aligned to Monday 1970-01-05 00:00 UTC, so weekly windows run Monday to Sunday."""

_DAY_FIRST = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})$")
_YEAR_FIRST_SLASH = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$")
_YEARS = (1900, 2200)


def _checked(when: dt.datetime) -> float | None:
    if not _YEARS[0] <= when.year <= _YEARS[1]:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_time(value: object) -> float | None:
    """Epoch seconds (UTC) of a timestamp in one of the accepted forms; None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            return None
        try:
            return _checked(dt.datetime.fromtimestamp(seconds, dt.UTC))
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if match := _DAY_FIRST.match(text):
            day, month, year = int(match.group(1)), int(match.group(3)), int(match.group(4))
            return _checked(dt.datetime(year, month, day))
        if match := _YEAR_FIRST_SLASH.match(text):
            return _checked(dt.datetime(int(match.group(1)), int(match.group(2)), int(match.group(3))))
        if not re.match(r"^\d{4}-\d{2}-\d{2}", text):  # fromisoformat also takes "20130415" and week dates
            return None
        return _checked(dt.datetime.fromisoformat(text))
    except ValueError:
        return None


def window_start(ts: float, window_s: float) -> float:
    """Start (epoch seconds) of the window of length ``window_s`` holding ``ts``."""
    return WINDOW_ANCHOR + math.floor((ts - WINDOW_ANCHOR) / window_s) * window_s


def iso(ts: float) -> str:
    """ISO-8601 UTC form of epoch seconds, e.g. ``2013-04-22T00:00:00+00:00``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
