"""The canary judge: decides when a canary version does worse than the stable one and must be rolled back.

Every ``canary.check_interval_s`` each running canary is judged: its error rate above the
stable one's by ``canary.error_margin`` (after ``canary.min_requests``), a generative canary's
share of answers cut at the token limit above the stable one's by ``canary.length_margin`` (after
``canary.min_requests`` answers on both), or its live accuracy
from feedback labels below the stable one's by ``canary.accuracy_margin`` (after
``canary.min_feedback`` labels from at least ``canary.min_feedback_keys`` distinct API keys on
both, with monitoring on), and the runtime rolls it back in the registry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from lmforge.serve._settings import CanarySettings
from lmforge.serve._slots import Slot

__all__ = ["CanaryHost", "CanaryJudge"]

log = logging.getLogger("lmforge.serve")


class CanaryHost(Protocol):
    """What the judge reads and calls: the runtime's slots, its monitoring (or None) and its rollback."""

    slots: dict[str, Slot]
    monitor: Any

    async def rollback_canary(self, name: str, version: int, reason: str) -> None: ...


class CanaryJudge:
    """Judges the canaries of ``host``'s slots by ``settings`` (see the module docstring)."""

    def __init__(self, settings: CanarySettings, host: CanaryHost) -> None:
        self.settings = settings
        self.host = host

    async def run(self) -> None:
        """Judge every running canary every ``check_interval_s``, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.check_interval_s)
            for slot in list(self.host.slots.values()):
                canary = slot.canary
                if canary is None or slot.stable is None:
                    continue
                try:
                    reason = await self.verdict(slot)
                    if reason is not None:
                        await self.host.rollback_canary(slot.name, canary.version, reason)
                except Exception as exc:
                    log.warning("judging the canary of %s failed: %s", slot.name, str(exc)[:200])

    async def verdict(self, slot: Slot) -> str | None:
        """Why the slot's canary should be rolled back, or None while it does well enough."""
        c, s = slot.canary, slot.stable
        if c is None or s is None:
            return None
        cfg = self.settings
        if len(c.outcomes) >= cfg.min_requests:
            # A stable version without enough recent traffic (canary at 100 %) is held to 0 errors.
            stable_rate = s.error_rate() if len(s.outcomes) >= cfg.min_requests else 0.0
            if c.error_rate() > stable_rate + cfg.error_margin:
                return (
                    f"error rate {c.error_rate():.1%} over {len(c.outcomes)} requests vs stable "
                    f"{stable_rate:.1%} (margin {cfg.error_margin:.1%})"
                )
        if len(c.length_stops) >= cfg.min_requests and len(s.length_stops) >= cfg.min_requests:
            rate_c, rate_s = c.length_stop_rate(), s.length_stop_rate()
            if rate_c > rate_s + cfg.length_margin:
                return (f"{rate_c:.1%} of {len(c.length_stops)} answers cut at the token limit vs stable "
                        f"{rate_s:.1%} (margin {cfg.length_margin:.1%})")
        monitor = self.host.monitor
        if monitor is not None:
            live_c = await asyncio.to_thread(
                monitor.live_metrics, slot.name, str(c.version), window=cfg.window
            )
            live_s = await asyncio.to_thread(
                monitor.live_metrics, slot.name, str(s.version), window=cfg.window
            )
            acc_c, acc_s = live_c.get("accuracy"), live_s.get("accuracy")
            keys_c = await asyncio.to_thread(monitor.feedback_keys, slot.name, str(c.version), window=cfg.window)
            keys_s = await asyncio.to_thread(monitor.feedback_keys, slot.name, str(s.version), window=cfg.window)
            if (
                acc_c is not None
                and acc_s is not None
                and live_c.get("n", 0) >= cfg.min_feedback
                and live_s.get("n", 0) >= cfg.min_feedback
                and keys_c >= cfg.min_feedback_keys
                and keys_s >= cfg.min_feedback_keys
                and acc_c < acc_s - cfg.accuracy_margin
            ):
                return (
                    f"live accuracy {acc_c:.3f} over {live_c['n']} feedback labels from {keys_c} keys vs "
                    f"stable {acc_s:.3f} (margin {cfg.accuracy_margin:.3f})"
                )
        return None
