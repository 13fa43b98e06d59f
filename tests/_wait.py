"""Waiting for an observable state instead of sleeping a fixed time (the deadline only bounds a hang)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, every: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds; False if it never did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
