"""The registry poller: the registry is the source of truth, so the runtime re-reads it on a timer.

Every ``registry_poll_s`` the runtime reconciles with the registry, so ``lmforge registry
activate`` (another process, or another server sharing a PostgreSQL registry) takes effect
without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["RegistryPoller"]

log = logging.getLogger("lmforge.serve")


class RegistryPoller:
    """Calls ``reconcile`` every ``interval_s`` seconds; a failed sync is logged and tried again next time."""

    def __init__(self, interval_s: float, reconcile: Callable[[], Awaitable[None]]) -> None:
        self.interval_s = interval_s
        self.reconcile = reconcile

    async def run(self) -> None:
        """Sync until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.reconcile()
            except Exception as exc:  # a database hiccup must not stop the poller
                log.warning("registry sync failed: %s", str(exc).splitlines()[0][:200])
