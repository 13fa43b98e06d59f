"""uvicorn's server with a readiness drain before its graceful shutdown (see :mod:`lmforge.serve._server`).

Imported only when a server starts: uvicorn is the ``serve`` extra.
"""

from __future__ import annotations

import logging
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

__all__ = ["DrainingServer"]

log = logging.getLogger("lmforge.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a readiness drain before the graceful shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_s = drain_s
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn, the signal is not re-raised after shutdown: a drained server exits 0.
        if self.drain_until is None and self.drain_s > 0 and not self.should_exit:
            self.app.state.draining = True
            self.drain_until = time.monotonic() + self.drain_s
            log.warning("draining: /readyz answers 503, requests are still served for %.1f s", self.drain_s)
        elif not self.should_exit:
            self.app.state.draining = True
            self.should_exit = True
        else:
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return bool(await super().on_tick(counter))
